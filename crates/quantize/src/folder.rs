//! The output folder: written under a temporary name beside its final place and renamed there
//! once complete, so a killed run never leaves a half-written model where one is expected.

use bitsearch_records::{MANIFEST_FILE, Manifest};
use std::io;
use std::path::{Path, PathBuf};

/// Why `out` is not an earlier `quantize` output, the only kind of folder `--overwrite` may
/// replace: one whose manifest (in it, or in its `unet/` or `transformer/`) lists every file
/// beside it but the JSON configs a pipeline's denoiser folder carries. Manifests of any
/// format count, so outputs of an older bitsearch can be replaced.
pub fn not_replaceable(out: &Path) -> Option<String> {
    let dir = [out.to_path_buf(), out.join("unet"), out.join("transformer")]
        .into_iter()
        .find(|d| d.join(MANIFEST_FILE).is_file());
    let Some(dir) = dir else {
        return Some(format!("holds no {MANIFEST_FILE}, so it is not a folder quantize wrote"));
    };
    let Some(listed) = Manifest::files_listed_in(&dir) else {
        return Some(format!("{}: is not a bitsearch manifest", dir.join(MANIFEST_FILE).display()));
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => return Some(format!("{}: cannot read: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let config = entry.path().extension().is_some_and(|e| e == "json") && entry.path().is_file();
        if !config && !listed.contains(&name) {
            return Some(format!("holds {name}, which no quantize wrote there; move it or choose another --out"));
        }
    }
    None
}

/// A folder being written; dropped without [`Staging::commit`], it is removed.
#[derive(Debug)]
pub struct Staging {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    /// Creates `.NAME.partial` beside `target`, replacing one a killed run left behind.
    pub fn new(target: &Path) -> io::Result<Self> {
        let temp = bitsearch_types::staging_folder(target).ok_or_else(|| io::Error::other("is not a folder path"))?;
        if let Some(parent) = temp.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if temp.exists() {
            std::fs::remove_dir_all(&temp)?;
        }
        std::fs::create_dir(&temp)?;
        Ok(Self { temp, target: target.to_path_buf(), committed: false })
    }

    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Moves the folder into place, replacing an existing one when `overwrite`.
    pub fn commit(mut self, overwrite: bool) -> io::Result<()> {
        if self.target.exists() {
            if !overwrite {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "appeared while the model was written"));
            }
            std::fs::remove_dir_all(&self.target)?;
        }
        std::fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

/// Copies every component of the pipeline folder `source` into `dest` except the denoiser's
/// models (in the subfolder `denoiser`: `unet`, or a DiT's `transformer`), and returns
/// `dest/denoiser`, where the quantized denoiser goes (its JSON files are copied).
pub fn copy_pipeline(source: &Path, dest: &Path, denoiser: &std::ffi::OsStr) -> io::Result<PathBuf> {
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        if entry.file_name() != denoiser {
            copy_tree(&entry.path(), &dest.join(entry.file_name()))?;
        }
    }
    let target = dest.join(denoiser);
    std::fs::create_dir_all(&target)?;
    for entry in std::fs::read_dir(source.join(denoiser))? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "json") {
            std::fs::copy(entry.path(), target.join(entry.file_name()))?;
        }
    }
    Ok(target)
}

fn copy_tree(source: &Path, dest: &Path) -> io::Result<()> {
    if source.is_dir() {
        std::fs::create_dir_all(dest)?;
        for entry in std::fs::read_dir(source)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dest.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(source, dest).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_earlier_output_with_nothing_added_may_be_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        assert!(not_replaceable(out).unwrap().contains("holds no bitsearch-quantized.yaml"));
        let manifest = "bitsearch_quantized: 1\nmodels:\n- file: model.onnx\nweights: weights.bin\n";
        std::fs::write(out.join(MANIFEST_FILE), manifest).unwrap();
        for file in ["model.onnx", "weights.bin", "config.json"] {
            std::fs::write(out.join(file), b"x").unwrap();
        }
        assert_eq!(not_replaceable(out), None);
        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        assert!(not_replaceable(out).unwrap().contains("holds notes.txt"));
        std::fs::write(out.join(MANIFEST_FILE), "just: text\n").unwrap();
        assert!(not_replaceable(out).unwrap().contains("is not a bitsearch manifest"));
    }

    #[test]
    fn a_folder_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let staging = Staging::new(&target).unwrap();
        std::fs::write(staging.path().join("f"), b"x").unwrap();
        drop(staging);
        assert!(!target.exists() && !dir.path().join(".out.partial").exists());

        let staging = Staging::new(&target).unwrap();
        std::fs::write(staging.path().join("f"), b"1").unwrap();
        staging.commit(false).unwrap();
        assert_eq!(std::fs::read(target.join("f")).unwrap(), b"1");
        let staging = Staging::new(&target).unwrap();
        std::fs::write(staging.path().join("f"), b"2").unwrap();
        assert!(staging.commit(false).is_err(), "an existing folder stays without overwrite");
        let staging = Staging::new(&target).unwrap();
        std::fs::write(staging.path().join("f"), b"3").unwrap();
        staging.commit(true).unwrap();
        assert_eq!(std::fs::read(target.join("f")).unwrap(), b"3");
    }
}
