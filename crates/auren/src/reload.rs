//! The thresholds config in force, and its hot reload.
//!
//! The file is validated at start (an invalid file refuses to start) and on every reload: on file
//! change (mtime polled each second), on SIGHUP and on `POST /admin/reload`. A reload that fails
//! validation is rejected with its error, counted, and the config in force stays; the predecessor
//! silently fell back to defaults instead.

use crate::shutdown::Shutdown;
use auren_core::engine::config::EngineConfig;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

pub struct ConfigHandle {
    current: RwLock<Arc<EngineConfig>>,
    path: Option<PathBuf>,
    seen_mtime: Mutex<Option<SystemTime>>,
}

fn mtime(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ConfigHandle {
    /// Loads the file (or the defaults when there is none); an invalid file is an error.
    pub fn load(path: Option<PathBuf>) -> anyhow::Result<Arc<Self>> {
        let cfg = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    anyhow::anyhow!("reading BIOMETRIC_CONFIG {}: {e}", p.display())
                })?;
                EngineConfig::from_yaml(&text).map_err(|e| {
                    anyhow::anyhow!("BIOMETRIC_CONFIG {} is invalid: {e}", p.display())
                })?
            }
            None => EngineConfig::default(),
        };
        let seen = path.as_ref().and_then(mtime);
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(cfg)),
            path,
            seen_mtime: Mutex::new(seen),
        }))
    }

    pub fn fixed(cfg: EngineConfig) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(cfg)),
            path: None,
            seen_mtime: Mutex::new(None),
        })
    }

    pub fn current(&self) -> Arc<EngineConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the file. `trigger` labels the log line (file, signal, api).
    pub fn reload(&self, trigger: &'static str) -> Result<Arc<EngineConfig>, String> {
        let Some(path) = &self.path else {
            return Err("no BIOMETRIC_CONFIG file is configured".into());
        };
        *self.seen_mtime.lock().unwrap_or_else(|e| e.into_inner()) = mtime(path);
        let result = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))
            .and_then(|t| EngineConfig::from_yaml(&t).map_err(|e| e.to_string()));
        match result {
            Ok(cfg) => {
                let cfg = Arc::new(cfg);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = cfg.clone();
                metrics::counter!("auren_config_reloads_total", "outcome" => "applied")
                    .increment(1);
                tracing::info!(trigger, "thresholds reloaded");
                Ok(cfg)
            }
            Err(e) => {
                metrics::counter!("auren_config_reloads_total", "outcome" => "rejected")
                    .increment(1);
                tracing::warn!(trigger, error = %e, "thresholds reload rejected; the config in force stays");
                Err(e)
            }
        }
    }

    /// Whether there is a file to reload from.
    pub fn has_file(&self) -> bool {
        self.path.is_some()
    }

    /// Reloads on file change and on SIGHUP until shutdown. The SIGHUP handler is installed
    /// even without a file: the signal's default action would end the process.
    pub fn watch(self: &Arc<Self>, shutdown: &Shutdown) {
        self.watch_sighup(shutdown);
        let Some(path) = self.path.clone() else {
            return;
        };
        let me = self.clone();
        let stop = shutdown.clone();
        shutdown.spawn("config-file-watcher", async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait() => return Ok(()),
                }
                let now = mtime(&path);
                let changed = *me.seen_mtime.lock().unwrap_or_else(|e| e.into_inner()) != now;
                if changed {
                    let _ = me.reload("file");
                }
            }
        });
    }

    fn watch_sighup(self: &Arc<Self>, shutdown: &Shutdown) {
        #[cfg(unix)]
        {
            let me = self.clone();
            let stop = shutdown.clone();
            shutdown.spawn("sighup-watcher", async move {
                use tokio::signal::unix::{signal, SignalKind};
                let mut hup = signal(SignalKind::hangup())?;
                loop {
                    tokio::select! {
                        got = hup.recv() => {
                            if got.is_none() {
                                return Ok(());
                            }
                            if me.has_file() {
                                let _ = me.reload("sighup");
                            } else {
                                tracing::info!("SIGHUP: no BIOMETRIC_CONFIG file is configured; nothing to reload");
                            }
                        }
                        _ = stop.wait() => return Ok(()),
                    }
                }
            });
        }
    }
}
