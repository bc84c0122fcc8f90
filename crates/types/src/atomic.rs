//! Files between stages: written all at once (a reader sees the old file or the new one, never
//! half of it, because every stage's outputs may be read while a long run is interrupted), and
//! identified by the sha256 of their bytes.

use std::io::Write;
use std::path::Path;

/// The folder a whole output folder `target` is written in before it is renamed into place:
/// `.NAME.partial` beside it. One found later is what a killed run left.
pub fn staging_folder(target: &Path) -> Option<std::path::PathBuf> {
    let name = target.file_name()?.to_string_lossy();
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(parent.join(format!(".{name}.partial")))
}

/// Whether `path` is a [`staging_folder`]: an output still being written, or left unfinished.
pub fn is_staging_folder(path: &Path) -> bool {
    path.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| n.starts_with('.') && n.ends_with(".partial"))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

/// [`write_atomically`] for content written piece by piece (gigabytes of weights need not be
/// gathered in memory first).
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".bitsearch-").suffix(".tmp").tempfile_in(dir)?;
    {
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        write(&mut buffered)?;
        buffered.flush()?;
    }
    // Temporary files are private (0600); what a stage writes is meant to be read by others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Hex sha256 of a file's bytes, as `sha256sum` prints it.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    // Streamed: the file may be a model of several gigabytes.
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of every file under `path` (the file itself when it is one).
pub fn tree_bytes(path: &Path) -> std::io::Result<u64> {
    if path.is_dir() {
        std::fs::read_dir(path)?.map(|e| tree_bytes(&e?.path())).sum()
    } else {
        Ok(path.metadata()?.len())
    }
}
