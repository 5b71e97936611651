//! Debian packages a test suite needs, installed with apt-get when they are missing, and a
//! clear failure (never a skip) when that fails.
use std::process::Command;
use std::sync::Mutex;

pub fn is_root() -> bool {
    // SAFETY: geteuid only reads the process's credentials.
    unsafe { libc::geteuid() == 0 }
}

/// Installs the packages `missing` names (it is asked again afterwards, to tell that they
/// are there now). `who` names the tests in the failure message. One install at a time: apt
/// takes a lock.
pub fn install_missing(who: &str, missing: impl Fn() -> Vec<&'static str>) {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let names = missing().join(" ");
    if names.is_empty() {
        return;
    }
    eprintln!("installing Debian's {names}");
    let sudo = if is_root() { "" } else { "sudo -n " };
    let script = format!(
        "{sudo}apt-get update -q && DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -q \
         {names}"
    );
    let status = Command::new("sh").arg("-c").arg(&script).status();
    let still_missing = missing();
    assert!(
        matches!(status, Ok(s) if s.success()) && still_missing.is_empty(),
        "{who} need Debian's {names} and could not install them ({status:?}; still missing: \
         {still_missing:?}). Install them with: apt-get install {names}"
    );
}
