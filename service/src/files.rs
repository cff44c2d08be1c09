//! Files Tally creates that hold what others must not read: the SQLite
//! store (usage, owners, contacts, token hashes) and the outbox's `.eml`
//! messages. Created readable by their owner only, whatever the umask.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `path` (or truncates it) readable and writable by its owner
/// only (mode 0600 on Unix).
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Creates an empty `path` readable by its owner only, unless it exists
/// (a new SQLite store: SQLite gives its WAL and shared-memory files the
/// same mode as the store).
pub fn touch_private(path: &Path) -> io::Result<()> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a folder (and its parents) readable by its owner only.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_the_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        create_private(&f).unwrap();
        touch_private(&dir.path().join("b")).unwrap();
        create_private_dir(&dir.path().join("c/d")).unwrap();
        for (p, mode) in [("a", 0o600), ("b", 0o600), ("c/d", 0o700)] {
            let m = std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, mode, "{p}");
        }
    }
}
