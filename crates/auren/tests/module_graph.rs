//! The crate's shape, checked: its top-level modules depend on each other without a cycle, and
//! only the ports' own folders (and the settings that name them) look at which backend is
//! configured. Read from the source, so a new `use` that closes a loop fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a source file belongs to (`log` for `src/log/kafka/mod.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The code of a file without its unit tests (they may reach anywhere).
fn code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = module_of(&src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        let deps = g.entry(m.clone()).or_default();
        for part in code(&text).split("crate::").skip(1) {
            let dep: String = part
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !dep.is_empty() && dep != m {
                deps.insert(dep);
            }
        }
        // `use crate::{a, b}` form.
        for part in code(&text).split("use crate::{").skip(1) {
            let list = part.split('}').next().unwrap_or("");
            for item in list.split(',') {
                let dep: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !dep.is_empty() && dep != m {
                    deps.insert(dep);
                }
            }
        }
    }
    g
}

fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn top_level_modules_form_no_cycle() {
    let g = graph();
    assert!(g.len() >= 10, "{g:?}");
    assert!(
        g["root"].contains("log") && g["app"].contains("root"),
        "{g:?}"
    );
    assert_eq!(find_cycle(&g), None, "import cycle; the graph: {g:#?}");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut g = graph();
    g.entry("settings".into()).or_default().insert("app".into());
    assert!(find_cycle(&g).is_some());
}

#[test]
fn only_the_ports_look_at_which_backend_is_configured() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let allowed = ["log", "store", "cache", "settings"];
    let mut offenders = Vec::new();
    for f in &files {
        if module_of(&src, f).is_some_and(|m| allowed.contains(&m.as_str())) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for needle in [
            "kafka_bootstrap_servers",
            "postgres_url",
            "redis_url",
            "backend() ==",
        ] {
            if code(&text).contains(needle) {
                offenders.push(format!("{} uses {needle}", f.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
