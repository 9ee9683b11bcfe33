//! Durable writes shared by the file outbox and the spool: a file is written under a temporary
//! name, fsynced, renamed into place, and (by the caller, once per batch of renames) its
//! directory fsynced, so that after a crash a file either exists whole under its final name or
//! not at all. Directories are created 0750 and files 0640 (before the umask): they hold mail.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The mode of directories the outbox and the spool create.
pub const DIR_MODE: u32 = 0o750;
/// The mode of message, envelope and state files.
pub const FILE_MODE: u32 = 0o640;

/// Creates `dir` and its missing parents with `DIR_MODE`; an existing directory keeps the mode
/// its owner gave it.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Writes `parts` one after the other to `temporary` (vectored writes: one `writev` for them
/// all when the kernel takes it whole, and never a copy to join them), fsyncs it and renames it
/// to `target`.
/// On any error the temporary file is removed (it was never visible under `target`). The
/// directory of `target` is not synced: call [`sync_dir`] once the batch is renamed.
pub fn write_atomically(temporary: &Path, target: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(temporary)?;
        write_all_vectored(&mut file, parts)?;
        file.sync_all()?;
        drop(file);
        fs::rename(temporary, target)
    })();
    if written.is_err() {
        let _ = fs::remove_file(temporary);
    }
    written
}

/// Writes every byte of `parts`, in order, with as few `writev` calls as the kernel allows.
fn write_all_vectored(file: &mut File, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = slices.as_mut_slice();
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut rest, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes the renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("sesgate-durable-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        create_dir(&dir).unwrap();
        let temporary = dir.join("tmp-file");
        // The target's directory does not exist: the rename fails after the write.
        let error = write_atomically(&temporary, &dir.join("missing/target"), &[b"x"]);
        assert!(error.is_err());
        assert!(!temporary.exists());
        write_atomically(&temporary, &dir.join("target"), &[b"a", b"b"]).unwrap();
        sync_dir(&dir).unwrap();
        assert_eq!(fs::read(dir.join("target")).unwrap(), b"ab");
        assert!(!temporary.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
