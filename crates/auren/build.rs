//! Stamps the binary with the git revision it was built from (`auren_build_info`, `--version`).
//! A build outside a git checkout (a source tarball, an image built without `.git`) is not an
//! error: the revision is then `AUREN_GIT_REVISION` from the build's environment, or `unknown`.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=AUREN_GIT_REVISION");
    let given = std::env::var("AUREN_GIT_REVISION")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let revision = given
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuilt when HEAD moves: HEAD itself (a checkout) and the ref it names (a commit). Only
    // files that exist are named: cargo reruns a script whose watched file is missing on every
    // build.
    let mut watched = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) {
        watched.push(dir.join("HEAD"));
        let common = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from);
        if let (Some(reference), Some(common)) = (git(&["symbolic-ref", "-q", "HEAD"]), common) {
            watched.push(common.join(reference));
            watched.push(common.join("packed-refs"));
        }
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    if watched.is_empty() {
        // No git: only the environment variable above can change the revision.
        println!("cargo:rerun-if-changed=build.rs");
    }
    println!("cargo:rustc-env=AUREN_GIT_REVISION={revision}");
}
