//! Builds the browser editor (`web/ui`: npm + Vite) when its bundle is missing or stale, and
//! generates `$OUT_DIR/ui_assets.rs`, the table of files that `src/assets.rs` embeds.
//!
//! - Fresh: `web/ui/dist/.chorus-build` holds a fingerprint of every input (sources, package
//!   and build files); if it matches, nothing runs. Cargo reruns this script only when one of
//!   those inputs changes, so an unchanged tree costs nothing.
//! - Stale or missing: `npm ci` (when `node_modules` does not match `package-lock.json`), then
//!   `vite build` and the gzip step into a temporary directory that replaces `dist` whole. A
//!   lock file keeps concurrent builds (several target directories) from racing.
//! - No Node.js/npm, or the build fails: the build still succeeds, with a `cargo:warning`, and
//!   the node serves a page that says the editor was not built and how to fix it. Cargo then
//!   reruns this script on every build, so installing Node.js is enough to heal it. (Without
//!   npm, a `dist` built by hand is embedded as it is, with a warning that it may be stale.)
//! - `CHORUS_SKIP_UI=1`: never run npm; embed `dist` as it is if there is one, else that page.
//!
//! The files are copied into `$OUT_DIR` before being embedded, so cleaning or rebuilding
//! `dist` never breaks a later compile of this crate.

use std::fmt::Write as _;
use std::fs;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Inputs of the bundle, relative to `web/ui`: directories are scanned recursively.
const INPUTS: &[&str] = &[
    "src",
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
    "scripts",
];
/// Marks a complete build in `dist`; holds the inputs' fingerprint.
const STAMP: &str = ".chorus-build";
/// Marks an `npm ci` in `node_modules`; holds the lock file's fingerprint (the lock records the
/// dependencies of package.json too).
const INSTALL_STAMP: &str = ".chorus-install";
/// Longest an npm step may run (a cold `npm ci` on a slow network takes a few minutes).
const NPM_STEP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Longest to wait for another build holding the lock.
const LOCK_WAIT: Duration = Duration::from_secs(20 * 60);
/// A lock older than this is left over from a killed build.
const LOCK_STALE: Duration = Duration::from_secs(30 * 60);
/// Lines of a failed step's output shown in the warning and on the fallback page.
const ERROR_TAIL_LINES: usize = 12;
/// Environment variable that turns the npm build off.
const SKIP_ENV: &str = "CHORUS_SKIP_UI";

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let ui = manifest.join("ui");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={SKIP_ENV}");
    for input in INPUTS {
        println!("cargo:rerun-if-changed=ui/{input}");
    }

    let outcome = bundle(&ui);
    let embedded = match outcome {
        Ok(Built::Fresh(dist)) => generate(&dist, &out_dir, None),
        Ok(Built::AsIs(dist, why)) => {
            println!("cargo:warning=web UI: {why}; embedding web/ui/dist as it is (it may be out of date)");
            println!("cargo:rerun-if-changed=ui/dist/{STAMP}.missing");
            generate(&dist, &out_dir, None)
        }
        Err(reason) => {
            for line in reason.lines().filter(|l| !l.trim().is_empty()) {
                println!("cargo:warning=web UI: {line}");
            }
            // A path that never exists: cargo reruns this script on every build until the
            // bundle builds (e.g. once Node.js is installed).
            println!("cargo:rerun-if-changed=ui/dist/{STAMP}.missing");
            generate(&ui.join("dist"), &out_dir, Some(&reason))
        }
    };
    if let Err(e) = embedded {
        panic!("cannot write the embedded asset table: {e}");
    }
}

/// What `bundle` found or made.
enum Built {
    /// Built from the current inputs.
    Fresh(PathBuf),
    /// Present, but its freshness could not be checked or fixed (the reason).
    AsIs(PathBuf, String),
}

/// Makes sure `ui/dist` holds a bundle built from the current inputs; returns its path, or why
/// there is none.
fn bundle(ui: &Path) -> Result<Built, String> {
    let dist = ui.join("dist");
    let sources =
        fingerprint(ui, INPUTS).map_err(|e| format!("cannot read the UI sources: {e}"))?;
    if stamp_matches(&dist.join(STAMP), &sources) {
        return Ok(Built::Fresh(dist));
    }
    let hand_built = dist.join("index.html").is_file();
    if std::env::var_os(SKIP_ENV).is_some_and(|v| v != "0" && !v.is_empty()) {
        if hand_built {
            return Ok(Built::AsIs(dist, format!("{SKIP_ENV} is set")));
        }
        return Err(format!(
            "{SKIP_ENV} is set and there is no web/ui/dist, so the editor bundle was not built.\n\
             Unset {SKIP_ENV} (with Node.js 20+ and npm installed) and build again."
        ));
    }
    let Some(npm) = find_npm() else {
        if hand_built {
            return Ok(Built::AsIs(dist, "Node.js/npm was not found".to_owned()));
        }
        return Err("Node.js/npm was not found, so the browser editor bundle was not built.\n\
                    Install Node.js 20 or newer (with npm), then build again: cargo build --release --bin chorus"
            .to_owned());
    };
    let _lock = BuildLock::acquire(&ui.join(".build.lock"))?;
    // Another build may have finished while we waited for the lock.
    if stamp_matches(&dist.join(STAMP), &sources) {
        return Ok(Built::Fresh(dist));
    }
    let install_fingerprint = fingerprint(ui, &["package-lock.json"])
        .map_err(|e| format!("cannot read package files: {e}"))?;
    let modules = ui.join("node_modules");
    if !stamp_matches(&modules.join(INSTALL_STAMP), &install_fingerprint) {
        run(
            Command::new(&npm)
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(ui),
            "npm ci",
        )?;
        fs::write(modules.join(INSTALL_STAMP), &install_fingerprint)
            .map_err(|e| format!("writing the install stamp: {e}"))?;
    }
    // Under the lock, any other staging or retired bundle is left over from a killed build.
    if let Ok(entries) = fs::read_dir(ui) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("dist.tmp-") || name.starts_with("dist.old-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let staging = ui.join(format!("dist.tmp-{}", std::process::id()));
    let staging_arg = staging.to_string_lossy().into_owned();
    let built = run(
        Command::new("node")
            .args([
                "node_modules/vite/bin/vite.js",
                "build",
                "--emptyOutDir",
                "--outDir",
                &staging_arg,
            ])
            .current_dir(ui),
        "vite build",
    )
    .and_then(|()| {
        run(
            Command::new("node")
                .args(["scripts/compress.mjs", &staging_arg])
                .current_dir(ui),
            "gzip step",
        )
    })
    .and_then(|()| {
        fs::write(staging.join(STAMP), &sources)
            .map_err(|e| format!("writing the build stamp: {e}"))
    });
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    // Swap the new bundle in whole: readers see the old one or the new one, never a mix.
    let retired = ui.join(format!("dist.old-{}", std::process::id()));
    if dist.exists() {
        fs::rename(&dist, &retired).map_err(|e| format!("moving the old bundle aside: {e}"))?;
    }
    fs::rename(&staging, &dist).map_err(|e| format!("moving the new bundle into place: {e}"))?;
    let _ = fs::remove_dir_all(&retired);
    Ok(Built::Fresh(dist))
}

/// `npm` (or `npm.cmd` on Windows) if it runs.
fn find_npm() -> Option<String> {
    let candidates: &[&str] = if cfg!(windows) {
        &["npm.cmd", "npm"]
    } else {
        &["npm"]
    };
    candidates.iter().find_map(|name| {
        let ok = Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| (*name).to_owned())
    })
}

/// Runs one build step with a timeout; on failure, the tail of its output.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let log_path = std::env::temp_dir().join(format!(
        "chorus-ui-{}-{}.log",
        std::process::id(),
        what.replace(' ', "-")
    ));
    let log = fs::File::create(&log_path)
        .map_err(|e| format!("{what}: cannot create a log file: {e}"))?;
    let log_err = log.try_clone().map_err(|e| format!("{what}: {e}"))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("{what} could not start: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() > NPM_STEP_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "{what} took longer than {} s and was stopped",
                    NPM_STEP_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => break Err(format!("{what}: {e}")),
        }
    };
    let mut output = String::new();
    if let Ok(mut f) = fs::File::open(&log_path) {
        let _ = f.read_to_string(&mut output);
    }
    let _ = fs::remove_file(&log_path);
    let tail = || {
        let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(ERROR_TAIL_LINES)..].join("\n")
    };
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what} failed ({s}) in web/ui:\n{}", tail())),
        Err(e) => Err(format!("{e}\n{}", tail())),
    }
}

/// A fingerprint of the named files and directories under `root` (paths, sizes and contents).
fn fingerprint(root: &Path, inputs: &[&str]) -> std::io::Result<String> {
    let mut files = Vec::new();
    for input in inputs {
        collect(&root.join(input), &mut files)?;
    }
    files.sort();
    let mut hasher = Fnv1a::default();
    for file in &files {
        let relative = file.strip_prefix(root).unwrap_or(file);
        hasher.write(relative.to_string_lossy().as_bytes());
        hasher.write(&[0]);
        let bytes = fs::read(file)?;
        hasher.write(&(bytes.len() as u64).to_le_bytes());
        hasher.write(&bytes);
    }
    Ok(format!(
        "v1 {:016x} {} files\n",
        hasher.finish(),
        files.len()
    ))
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            collect(&entry?.path(), files)?;
        }
    } else {
        files.push(path.to_owned());
    }
    Ok(())
}

fn stamp_matches(stamp: &Path, fingerprint: &str) -> bool {
    fs::read_to_string(stamp).is_ok_and(|s| s == fingerprint)
}

/// 64-bit FNV-1a: stable across Rust versions (unlike `DefaultHasher`), plenty for change
/// detection.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// An exclusive lock on the UI build, held while this value lives.
struct BuildLock(PathBuf);

impl BuildLock {
    fn acquire(path: &Path) -> Result<BuildLock, String> {
        let started = Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    use std::io::Write as _;
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(BuildLock(path.to_owned()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if lock_is_stale(path) {
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if started.elapsed() > LOCK_WAIT {
                        return Err(format!(
                            "gave up waiting for another UI build ({} is held)",
                            path.display()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A lock whose holder is gone (Linux: its pid has no /proc entry) or that is very old.
fn lock_is_stale(path: &Path) -> bool {
    let age = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    if age > LOCK_STALE {
        return true;
    }
    let holder = fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    match holder {
        Some(pid) if Path::new("/proc/self").exists() => {
            !Path::new(&format!("/proc/{pid}")).exists()
        }
        // Just created, pid not written yet; or no /proc: trust the age.
        _ => false,
    }
}

/// Writes `$OUT_DIR/ui_assets.rs`: copies of the bundle's files and a table embedding them.
/// With `missing` set, the table is empty and carries the reason.
fn generate(dist: &Path, out_dir: &Path, missing: Option<&str>) -> std::io::Result<()> {
    let copy_root = out_dir.join("ui");
    let _ = fs::remove_dir_all(&copy_root);
    let mut table = String::new();
    writeln!(table, "// Generated by web/build.rs. Do not edit.").ok();
    match missing {
        Some(reason) => {
            writeln!(
                table,
                "/// Whether the editor bundle is embedded.\npub const UI_BUILT: bool = false;"
            )
            .ok();
            writeln!(
                table,
                "/// Why the editor bundle is not embedded.\npub const UI_MISSING_REASON: &str = {reason:?};"
            )
            .ok();
            writeln!(
                table,
                "/// The embedded files.\npub static UI_ASSETS: &[UiAsset] = &[];"
            )
            .ok();
        }
        None => {
            let mut files = Vec::new();
            collect(dist, &mut files)?;
            files.sort();
            fs::create_dir_all(&copy_root)?;
            writeln!(
                table,
                "/// Whether the editor bundle is embedded.\npub const UI_BUILT: bool = true;"
            )
            .ok();
            writeln!(table, "/// Why the editor bundle is not embedded.\npub const UI_MISSING_REASON: &str = \"\";")
                .ok();
            writeln!(
                table,
                "/// The embedded files.\npub static UI_ASSETS: &[UiAsset] = &["
            )
            .ok();
            for (index, file) in files.iter().enumerate() {
                let relative = file
                    .strip_prefix(dist)
                    .unwrap_or(file)
                    .to_string_lossy()
                    .replace('\\', "/");
                if relative == STAMP || relative.ends_with(".gz") {
                    continue;
                }
                let body = fs::read(file)?;
                let copy = copy_root.join(format!("{index}"));
                fs::write(&copy, &body)?;
                let gzip_source = PathBuf::from(format!("{}.gz", file.display()));
                let gzip = if gzip_source.exists() {
                    let gz_copy = copy_root.join(format!("{index}.gz"));
                    fs::copy(&gzip_source, &gz_copy)?;
                    format!("Some(include_bytes!({:?}))", gz_copy.display().to_string())
                } else {
                    "None".to_owned()
                };
                let mut etag = Fnv1a::default();
                etag.write(&body);
                writeln!(
                    table,
                    "    UiAsset {{ path: {path:?}, body: include_bytes!({copy:?}), gzip: {gzip}, etag: \"\\\"{etag:016x}\\\"\" }},",
                    path = format!("/{relative}"),
                    copy = copy.display().to_string(),
                    etag = etag.finish(),
                )
                .ok();
            }
            writeln!(table, "];").ok();
        }
    }
    let target = out_dir.join("ui_assets.rs");
    // Leave the file alone when nothing changed, so rustc has nothing new to read.
    if fs::read_to_string(&target).ok().as_deref() != Some(table.as_str()) {
        fs::write(target, table)?;
    }
    Ok(())
}
