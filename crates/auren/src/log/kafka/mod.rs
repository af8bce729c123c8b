//! The Kafka log: an idempotent producer with `acks=all`, keyed by pseudonym.
//!
//! `append` sends every record, then waits for every delivery report; only when the broker has
//! confirmed all of them does the caller get `Ok` (and the HTTP 2xx). Kafka cannot refuse a
//! duplicate, so duplicates are stopped in front of it by the [`Dedup`] cache, claimed before the
//! send and confirmed after the delivery report. The bridge's group consumer is in [`consumer`].
//!
//! Every client (producer, consumers, admin) starts from one base config: the bootstrap servers,
//! the security settings (`security.protocol` ssl / sasl_ssl, SASL PLAIN or SCRAM, CA and client
//! certificates: librdkafka's OpenSSL) and any other property from `AUREN_KAFKA_PROPERTIES`.
//! librdkafka reports a failed TLS handshake only to the client's error callback, so the
//! producer keeps the last one ([`BrokerErrors`]) and the start-up check names it.

mod consumer;

use super::{
    Appended, EventLog, LogError, LoggedRecord, Record, RecordStream, StartAt, Subscription,
};
use crate::cache::{Claim, Dedup};
use crate::settings::LogSettings;
use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::TopicPartitionList;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The producer's context: logs broker errors as the default one does, and keeps the last, so a
/// failed check can say why (`SSL handshake failed: … certificate verify failed`, an
/// authentication failure) rather than only that no broker answered.
#[derive(Default, Clone)]
pub struct BrokerErrors {
    last: Arc<Mutex<Option<String>>>,
}

impl BrokerErrors {
    pub fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientContext for BrokerErrors {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::error!(error = %error, reason, "Kafka client error");
        // "1/1 brokers are down" follows every failed connection and says nothing of why.
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
        }
    }
}

type KafkaProducer = FutureProducer<BrokerErrors>;

pub struct KafkaLog {
    /// Made on first use: readers (`log read`, topic creation, end offsets) never start an
    /// idempotent producer session they do not need.
    producer: RwLock<Option<KafkaProducer>>,
    config: ClientConfig,
    /// Set when a delivery failed. An idempotent producer whose messages timed out has a gap in
    /// its sequence numbers; brokers (Tansu among them) may refuse that session for good after a
    /// restart. The next append then starts a fresh producer (a new producer id). Nothing is lost:
    /// the failed events were never acknowledged, and the vendor retries them.
    poisoned: AtomicBool,
    dedup: Arc<dyn Dedup>,
    timeout: Duration,
    /// Bootstrap, security and extra properties: what every client of this log starts from.
    base: ClientConfig,
    errors: BrokerErrors,
    session_timeout_ms: u32,
}

/// The config every client starts from: bootstrap servers, security, then the extra properties.
pub fn base_config(bootstrap: &str, settings: &LogSettings) -> Result<ClientConfig, LogError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    let properties = settings
        .kafka_client_properties()
        .map_err(|e| LogError::Unavailable(format!("{e:#}")))?;
    for (k, v) in properties {
        c.set(k, v);
    }
    Ok(c)
}

/// `timeout` is the caller's whole budget; the producer gives up a little earlier, so its
/// delivery error (not the caller's timer) ends the append and marks the producer for replacement.
pub fn producer_config(base: &ClientConfig, timeout: Duration) -> ClientConfig {
    let delivery_ms = timeout.as_millis().saturating_sub(500).max(500);
    let mut c = base.clone();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", delivery_ms.to_string())
        .set("socket.timeout.ms", "5000")
        .set("reconnect.backoff.max.ms", "1000")
        .set("log_level", "4");
    c
}

impl KafkaLog {
    pub fn new(
        bootstrap: &str,
        settings: &LogSettings,
        dedup: Arc<dyn Dedup>,
    ) -> Result<Self, LogError> {
        let timeout = settings.log_timeout();
        let base = base_config(bootstrap, settings)?;
        Ok(Self {
            producer: RwLock::new(None),
            config: producer_config(&base, timeout),
            poisoned: AtomicBool::new(false),
            dedup,
            timeout,
            base,
            errors: BrokerErrors::default(),
            session_timeout_ms: settings.kafka_session_timeout_ms,
        })
    }

    /// The producer, made now if there is none yet or the last one was poisoned.
    fn producer(&self) -> Result<KafkaProducer, LogError> {
        let poisoned = self.poisoned.swap(false, Ordering::AcqRel);
        if !poisoned {
            if let Some(p) = self.current_producer() {
                return Ok(p);
            }
        }
        let mut slot = self.producer.write().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(p) if !poisoned => Ok(p.clone()),
            _ => {
                if poisoned {
                    tracing::info!("replacing the Kafka producer after failed deliveries");
                }
                let fresh: KafkaProducer = self.config.create_with_context(self.errors.clone())?;
                *slot = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }

    fn current_producer(&self) -> Option<KafkaProducer> {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        let ids: Vec<String> = records.iter().map(|r| r.event_id.clone()).collect();
        let claims = match self.dedup.claim(&ids).await {
            Ok(c) => c,
            Err(e) => {
                metrics::counter!("auren_cache_errors_total", "op" => "dedup_claim").increment(1);
                tracing::warn!(error = %e, "dedup cache unavailable; writing without deduplication");
                vec![Claim::Claimed; ids.len()]
            }
        };
        let mine: Vec<String> = ids
            .iter()
            .zip(&claims)
            .filter(|(_, c)| **c == Claim::Claimed)
            .map(|(id, _)| id.clone())
            .collect();
        if claims.contains(&Claim::InFlight) {
            let _ = self.dedup.release(&mine).await;
            return Err(LogError::InFlight);
        }
        let producer = match self.producer() {
            Ok(p) => p,
            Err(e) => {
                let _ = self.dedup.release(&mine).await;
                return Err(e);
            }
        };
        let sends = records
            .iter()
            .zip(&claims)
            .filter(|(_, c)| **c == Claim::Claimed)
            .map(|(r, _)| {
                let headers = OwnedHeaders::new().insert(Header {
                    key: "event-id",
                    value: Some(r.event_id.as_bytes()),
                });
                let rec = FutureRecord::to(topic)
                    .key(r.key.as_bytes())
                    .payload(&r.value)
                    .headers(headers);
                producer.send(rec, Timeout::After(self.timeout))
            });
        // If the caller gives up while deliveries are pending, replace the producer too.
        let mut guard = PoisonOnDrop(&self.poisoned, true);
        let results = join_all(sends).await;
        guard.1 = false;
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        let mut first_error = None;
        let mut outcomes = Vec::with_capacity(records.len());
        let mut results = results.into_iter();
        for (id, claim) in ids.iter().zip(&claims) {
            if *claim == Claim::Done {
                outcomes.push(Appended::Duplicate);
                continue;
            }
            match results.next().expect("one result per claimed record") {
                Ok(d) => {
                    delivered.push(id.clone());
                    outcomes.push(Appended::Stored {
                        partition: d.partition,
                        offset: d.offset,
                    });
                }
                Err((e, _)) => {
                    failed.push(id.clone());
                    first_error.get_or_insert(LogError::Kafka(e));
                }
            }
        }
        if !delivered.is_empty() {
            if let Err(e) = self.dedup.confirm(&delivered).await {
                metrics::counter!("auren_cache_errors_total", "op" => "dedup_confirm").increment(1);
                tracing::warn!(error = %e, "could not record delivered event ids");
            }
        }
        if let Some(e) = first_error {
            self.poisoned.store(true, Ordering::Release);
            let _ = self.dedup.release(&failed).await;
            return Err(e);
        }
        Ok(outcomes)
    }

    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        start: &[(i32, i64)],
    ) -> Result<Box<dyn Subscription>, LogError> {
        Ok(Box::new(consumer::KafkaSubscription::new(
            &self.base,
            group,
            topic,
            start,
            self.session_timeout_ms,
        )?))
    }

    fn read(&self, topic: &str, from: StartAt, follow: bool) -> RecordStream {
        let (base, topic) = (self.base.clone(), topic.to_string());
        super::blocking_stream(move |send| {
            let result = read(&base, &topic, from, follow, |r| Ok(send(Ok(r))));
            if let Err(e) = result {
                send(Err(e));
            }
        })
    }

    fn follow(&self, topic: &str, from: &[(i32, i64)]) -> RecordStream {
        follow(self.base.clone(), topic.to_string(), from.to_vec())
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, LogError> {
        let (base, topic) = (self.base.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = base.create()?;
            let timeout = Duration::from_secs(10);
            partitions(&consumer, &topic)?
                .into_iter()
                .map(|p| Ok((p, consumer.fetch_watermarks(&topic, p, timeout)?.1)))
                .collect()
        })
        .await
        .map_err(|e| LogError::Unavailable(format!("Kafka metadata: {e}")))?
    }

    async fn create_topics(
        &self,
        topics: &[&str],
        partitions: i32,
        replication_factor: i32,
    ) -> Result<Vec<(String, bool)>, LogError> {
        create_topics(&self.base, topics, partitions, replication_factor).await
    }

    async fn check(&self) -> Result<(), LogError> {
        let producer = self.producer()?;
        let errors = self.errors.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Timeout::After(Duration::from_secs(2)))
                .map(|_| ())
                .map_err(|e| match errors.last() {
                    Some(reason) => {
                        LogError::Unavailable(format!("{e}; last broker error: {reason}"))
                    }
                    None => LogError::from(e),
                })
        })
        .await
        .map_err(|e| LogError::Unavailable(e.to_string()))?
    }

    /// The cluster id. A topic deleted and made again in the same cluster is caught by the
    /// other start-up check: stored offsets beyond the topic's end.
    async fn identity(&self) -> Result<String, LogError> {
        let producer = self.producer()?;
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_cluster_id(Timeout::After(Duration::from_secs(5)))
                .map(|id| format!("kafka:{id}"))
                .ok_or_else(|| {
                    LogError::Unavailable("the Kafka cluster did not give its id".into())
                })
        })
        .await
        .map_err(|e| LogError::Unavailable(e.to_string()))?
    }

    async fn close(&self) {
        let Some(producer) = self.current_producer() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            producer.flush(Timeout::After(Duration::from_secs(10)))
        })
        .await;
    }

    fn backend(&self) -> &'static str {
        "kafka"
    }
}

struct PoisonOnDrop<'a>(&'a AtomicBool, bool);

impl Drop for PoisonOnDrop<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// Creates topics; existing ones are left as they are. Returns (topic, created?) pairs.
async fn create_topics(
    base: &ClientConfig,
    topics: &[&str],
    partitions: i32,
    replication: i32,
) -> Result<Vec<(String, bool)>, LogError> {
    let admin: AdminClient<DefaultClientContext> = base.create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let results = admin.create_topics(&new, &opts).await?;
    results
        .into_iter()
        .map(|r| match r {
            Ok(t) => Ok((t, true)),
            Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => Ok((t, false)),
            Err((t, e)) => Err(LogError::Unavailable(format!("creating topic {t}: {e}"))),
        })
        .collect()
}

/// The partitions of `topic`; a topic the cluster does not know is [`LogError::UnknownTopic`].
fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, LogError> {
    let md = consumer.fetch_metadata(Some(topic), Timeout::After(Duration::from_secs(10)))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if parts.is_empty() {
        return Err(LogError::UnknownTopic(topic.to_string()));
    }
    Ok(parts)
}

/// Reads every partition of a topic from the beginning (or from its end) outside any group,
/// stopping at the end of the log (the high watermarks when reading started) unless `follow`,
/// or when `each` returns false.
fn read(
    base: &ClientConfig,
    topic: &str,
    from: StartAt,
    follow: bool,
    mut each: impl FnMut(LoggedRecord) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    let from_beginning = from == StartAt::Beginning;
    let consumer: BaseConsumer = base
        .clone()
        .set("group.id", format!("auren-log-read-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        // As for the bridge's consumer: short fetch waits keep Tansu from holding produce
        // requests behind a long poll, and a follower sees records at once.
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let parts = partitions(&consumer, topic)?;
    let mut tpl = TopicPartitionList::new();
    // Partitions still to drain: partition -> high watermark at start.
    let mut remaining = std::collections::HashMap::new();
    for p in &parts {
        let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10))?;
        let offset = if from_beginning {
            rdkafka::Offset::Beginning
        } else {
            rdkafka::Offset::End
        };
        tpl.add_partition_offset(topic, *p, offset)?;
        if from_beginning && high > low {
            remaining.insert(*p, high);
        }
    }
    consumer.assign(&tpl)?;
    loop {
        if remaining.is_empty() && !follow {
            break;
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                if remaining
                    .get(&m.partition())
                    .is_some_and(|high| m.offset() + 1 >= *high)
                {
                    remaining.remove(&m.partition());
                }
                let more = each(LoggedRecord {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                    value: m.payload().unwrap_or_default().to_vec(),
                })?;
                if !more {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// See [`EventLog::follow`]: a consumer that is assigned every partition at the given offsets
/// and never joins or commits to a group (its group id is its own and unused), so it leaves the
/// bridge's group and offsets alone. Dropping the stream drops the consumer.
fn follow(base: ClientConfig, topic: String, from: Vec<(i32, i64)>) -> RecordStream {
    use futures::StreamExt;
    use rdkafka::consumer::StreamConsumer;
    let setup = async move {
        let (b, t) = (base.clone(), topic.clone());
        let parts = tokio::task::spawn_blocking(move || {
            let meta: BaseConsumer = b.create()?;
            partitions(&meta, &t)
        })
        .await
        .map_err(|e| LogError::Unavailable(format!("Kafka metadata: {e}")))??;
        let consumer: StreamConsumer = base
            .clone()
            .set(
                "group.id",
                format!("auren-follow-{}", uuid::Uuid::now_v7().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // As for the bridge's consumer: short fetch waits keep Tansu from holding produce
            // requests behind a long poll.
            .set("fetch.wait.max.ms", "10")
            .set("log_level", "4")
            .create()?;
        let start: std::collections::HashMap<i32, i64> = from.into_iter().collect();
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            let offset = match start.get(&p) {
                Some(o) => rdkafka::Offset::Offset(*o),
                None => rdkafka::Offset::Beginning,
            };
            tpl.add_partition_offset(&topic, p, offset)?;
        }
        consumer.assign(&tpl)?;
        Ok::<_, LogError>(consumer)
    };
    futures::stream::once(setup)
        .flat_map(|consumer| match consumer {
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            Ok(consumer) => futures::stream::unfold(Some(consumer), |consumer| async move {
                let consumer = consumer?;
                let item = match consumer.recv().await {
                    Ok(m) => Ok(LoggedRecord {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .unwrap_or_default(),
                        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                        value: m.payload().unwrap_or_default().to_vec(),
                    }),
                    Err(e) => Err(LogError::from(e)),
                };
                // The stream ends after an error; its reader resumes from its own positions.
                let next = item.is_ok().then_some(consumer);
                Some((item, next))
            })
            .boxed(),
        })
        .boxed()
}
