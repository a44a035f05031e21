//! Private files on disk: atomic 0600 writes, 0700 directories, optional reads.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::PkiError;

/// Creates `dir` (and its parents) if missing; a directory this creates is
/// mode 0700. An existing directory keeps its mode.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| PkiError::io("creating directory", dir, e))
}

/// Reads `path` as UTF-8, or `None` if it does not exist.
///
/// # Errors
/// Any other IO error, or contents that are not UTF-8.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::io("reading", path, e)),
    }
}

/// Writes `contents` to `path` so that readers see either the old file or the
/// whole new one, never a part.
///
/// # Guarantees
/// The file is created mode 0600 (on Unix) under a temporary name in the same
/// directory, flushed to disk, then renamed over `path`; the directory is then
/// synced so the rename survives a crash. A pre-existing file at `path` is
/// replaced, whatever its mode was.
pub(crate) fn write_private_atomic(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));

    let result = write_new_private(&tmp, contents)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| PkiError::io("renaming", path, e)));
    if result.is_err() {
        // Best effort: do not leave half-written key material lying around.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir);
    Ok(())
}

fn write_new_private(tmp: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(tmp)
        .map_err(|e| PkiError::io("creating", tmp, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| PkiError::io("writing", tmp, e))
}

/// Syncs a directory so a rename in it is durable. Failure only costs
/// durability, not correctness, so it is logged rather than returned.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "could not sync directory");
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_should_replace_the_file_and_leave_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private_atomic(&path, b"one").unwrap();
        write_private_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the target file remains");
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_should_make_a_world_readable_file_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_private_atomic(&path, b"new").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn reading_a_missing_file_should_give_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_optional(&dir.path().join("nope")).unwrap().is_none());
    }
}
