//! Triton's system shared memory extension: regions of POSIX shared memory objects
//! (`shm_open`'s `/dev/shm/<key>`) that a caller on the same host registers by name, then names
//! in a request instead of sending the tensor bytes. The server keeps each region's file open and
//! reads and writes it at checked offsets (`pread`, `pwrite`: no mapping, no `unsafe`).
//!
//! Off unless `--allow-shared-memory` is given, as Triton's `--allow-client-shm`: a caller that
//! may register regions may make the server read and write any shared memory object its user
//! can open on the host, so it is for callers on the same host that the server trusts.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::error::ServeError;
use crate::text::clip;

/// One registered region: `byte_size` bytes from `offset` of the shared memory object `key`.
#[derive(Debug)]
pub struct Region {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
    file: File,
}

/// What a status request shows of a region.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegionStatus {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
}

/// The registered regions of a server; every operation refuses when the extension is off.
pub struct SharedMemory {
    /// Where `shm_open` keeps its objects; None when the extension is off.
    folder: Option<PathBuf>,
    regions: Mutex<BTreeMap<String, Arc<Region>>>,
}

/// At most this many regions at once: each holds an open file.
pub const MAX_REGIONS: usize = 256;

const DISABLED: &str = "the system shared memory extension is off on this server; start it with --allow-shared-memory to register regions, or send the data in the request";

fn invalid(message: String) -> ServeError {
    ServeError::invalid(message)
}

impl SharedMemory {
    pub fn disabled() -> Self {
        SharedMemory {
            folder: None,
            regions: Mutex::new(BTreeMap::new()),
        }
    }

    /// The extension on, for the objects under `folder` (`/dev/shm` on Linux).
    pub fn enabled(folder: PathBuf) -> Self {
        SharedMemory {
            folder: Some(folder),
            regions: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.folder.is_some()
    }

    fn folder(&self) -> Result<&PathBuf, ServeError> {
        self.folder
            .as_ref()
            .ok_or_else(|| invalid(DISABLED.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Region>>> {
        // A panic while holding the lock cannot leave the map half-changed: every change is one
        // insert or remove.
        self.regions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `byte_size` bytes from `offset` of the object `key` (`/name` or `name`, as
    /// `shm_open` takes it) as the region `name`.
    pub fn register(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<(), ServeError> {
        let folder = self.folder()?;
        if name.is_empty() {
            return Err(invalid(
                "a region name is needed to register system shared memory".to_string(),
            ));
        }
        let object = key.strip_prefix('/').unwrap_or(key);
        if object.is_empty() || object.contains(['/', '\0']) || object == "." || object == ".." {
            return Err(invalid(format!(
                "shared memory key '{}' is not the name of a shared memory object (shm_open's '/name')",
                clip(key)
            )));
        }
        if self.lock().contains_key(name) {
            return Err(invalid(format!(
                "shared memory region '{}' is already registered; unregister it first",
                clip(name)
            )));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(folder.join(object))
            .map_err(|error| {
                invalid(format!(
                    "unable to open shared memory object '{}': {error}",
                    clip(key)
                ))
            })?;
        let length = file
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|metadata| metadata.len())
            .ok_or_else(|| invalid(format!("'{}' is not a shared memory object", clip(key))))?;
        if offset.checked_add(byte_size).is_none_or(|end| end > length) {
            return Err(invalid(format!(
                "shared memory object '{}' holds {length} bytes; a region of {byte_size} bytes from offset {offset} does not fit in it",
                clip(key)
            )));
        }
        let mut regions = self.lock();
        if regions.len() >= MAX_REGIONS {
            return Err(invalid(format!(
                "{MAX_REGIONS} shared memory regions are registered, the most a server holds; unregister some first"
            )));
        }
        if regions.contains_key(name) {
            return Err(invalid(format!(
                "shared memory region '{}' is already registered; unregister it first",
                clip(name)
            )));
        }
        regions.insert(
            name.to_string(),
            Arc::new(Region {
                name: name.to_string(),
                key: key.to_string(),
                offset,
                byte_size,
                file,
            }),
        );
        Ok(())
    }

    /// Unregisters the region `name`, or every region when None. Unregistering a region that is
    /// not registered is not an error, as in Triton.
    pub fn unregister(&self, name: Option<&str>) -> Result<(), ServeError> {
        self.folder()?;
        let mut regions = self.lock();
        match name {
            Some(name) => {
                regions.remove(name);
            }
            None => regions.clear(),
        }
        Ok(())
    }

    /// The registered regions, or the one named (404 when it is not registered).
    pub fn status(&self, name: Option<&str>) -> Result<Vec<RegionStatus>, ServeError> {
        self.folder()?;
        let regions = self.lock();
        let status = |region: &Region| RegionStatus {
            name: region.name.clone(),
            key: region.key.clone(),
            offset: region.offset,
            byte_size: region.byte_size,
        };
        match name {
            None => Ok(regions.values().map(|region| status(region)).collect()),
            Some(name) => regions
                .get(name)
                .map(|region| vec![status(region)])
                .ok_or_else(|| not_registered(name)),
        }
    }

    /// The region `name`, with `byte_size` bytes from `offset` (within the region) checked to
    /// lie inside it; `owner` names the input or output for messages.
    fn span(
        &self,
        owner: &str,
        name: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<(Arc<Region>, u64), ServeError> {
        self.folder()?;
        let region = self.lock().get(name).cloned().ok_or_else(|| {
            invalid(format!(
                "{owner}: {}",
                not_registered(name).public_message()
            ))
        })?;
        if offset
            .checked_add(byte_size)
            .is_none_or(|end| end > region.byte_size)
        {
            return Err(invalid(format!(
                "{owner}: {byte_size} bytes from offset {offset} do not fit in shared memory region '{}' of {} bytes",
                clip(name),
                region.byte_size
            )));
        }
        Ok((region.clone(), region.offset + offset))
    }

    /// Checks, before a model runs, that an output's answer may go to `byte_size` bytes from
    /// `offset` of the region `name`.
    pub fn check(
        &self,
        owner: &str,
        name: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<(), ServeError> {
        self.span(owner, name, offset, byte_size).map(drop)
    }

    /// Reads `byte_size` bytes from `offset` of the region `name`.
    pub fn read(
        &self,
        owner: &str,
        name: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<Vec<u8>, ServeError> {
        let (region, at) = self.span(owner, name, offset, byte_size)?;
        let mut bytes = vec![0; usize::try_from(byte_size).unwrap_or(usize::MAX)];
        region.file.read_exact_at(&mut bytes, at).map_err(|error| {
            invalid(format!(
                "{owner}: cannot read shared memory region '{}': {error} (was the object shrunk?)",
                clip(name)
            ))
        })?;
        Ok(bytes)
    }

    /// Writes `bytes` from `offset` of the region `name`, which the request gave `byte_size`
    /// bytes there: refused when the bytes do not fit.
    pub fn write(
        &self,
        owner: &str,
        name: &str,
        offset: u64,
        byte_size: u64,
        bytes: &[u8],
    ) -> Result<(), ServeError> {
        let (region, at) = self.span(owner, name, offset, byte_size)?;
        if bytes.len() as u64 > byte_size {
            return Err(invalid(format!(
                "{owner}: the answer takes {} bytes, more than the {byte_size} bytes of shared memory the request gave it",
                bytes.len()
            )));
        }
        region.file.write_all_at(bytes, at).map_err(|error| {
            ServeError::internal(format!(
                "{owner}: cannot write shared memory region '{name}': {error}"
            ))
        })
    }
}

fn not_registered(name: &str) -> ServeError {
    ServeError::not_found(format!(
        "no system shared memory region '{}' is registered",
        clip(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::error::ErrorKind;

    fn object(bytes: &[u8]) -> (tempfile::TempDir, SharedMemory) {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("object"), bytes).unwrap();
        let memory = SharedMemory::enabled(folder.path().to_path_buf());
        (folder, memory)
    }

    #[test]
    fn reads_and_writes_within_the_region_only() {
        let (folder, memory) = object(&[0, 1, 2, 3, 4, 5, 6, 7]);
        memory.register("r", "/object", 2, 4).unwrap();
        assert_eq!(memory.read("input 'x'", "r", 1, 2).unwrap(), vec![3, 4]);
        memory.write("output 'y'", "r", 2, 2, &[9, 9]).unwrap();
        assert_eq!(
            std::fs::read(folder.path().join("object")).unwrap(),
            vec![0, 1, 2, 3, 9, 9, 6, 7]
        );
        let error = memory.read("input 'x'", "r", 3, 2).unwrap_err();
        assert_eq!(
            error.public_message(),
            "input 'x': 2 bytes from offset 3 do not fit in shared memory region 'r' of 4 bytes"
        );
        assert!(memory.read("input 'x'", "r", u64::MAX, 2).is_err());
        let error = memory.write("output 'y'", "r", 0, 1, &[1, 2]).unwrap_err();
        assert!(
            error.public_message().contains("more than the 1 bytes"),
            "{}",
            error.public_message()
        );
        let error = memory.read("input 'x'", "other", 0, 1).unwrap_err();
        assert_eq!(
            error.public_message(),
            "input 'x': no system shared memory region 'other' is registered"
        );
    }

    #[test]
    fn registration_checks_the_key_the_bounds_and_the_name() {
        let (_folder, memory) = object(&[0; 8]);
        for key in ["", "/", "../etc/passwd", "a/b", ".."] {
            assert!(memory.register("r", key, 0, 1).is_err(), "{key}");
        }
        assert!(memory.register("r", "missing", 0, 1).is_err());
        let error = memory.register("r", "object", 4, 5).unwrap_err();
        assert!(
            error.public_message().contains("holds 8 bytes"),
            "{}",
            error.public_message()
        );
        memory.register("r", "object", 0, 8).unwrap();
        assert!(memory.register("r", "object", 0, 8).is_err());
        assert_eq!(memory.status(None).unwrap().len(), 1);
        assert_eq!(
            memory.status(Some("nope")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        memory.unregister(Some("r")).unwrap();
        memory.unregister(Some("r")).unwrap();
        assert!(memory.status(None).unwrap().is_empty());
    }

    #[test]
    fn a_symbolic_link_is_not_followed() {
        let (folder, memory) = object(&[0; 8]);
        std::os::unix::fs::symlink(folder.path().join("object"), folder.path().join("link"))
            .unwrap();
        assert!(memory.register("r", "link", 0, 1).is_err());
    }

    #[test]
    fn everything_is_refused_while_the_extension_is_off() {
        let memory = SharedMemory::disabled();
        let error = memory.register("r", "object", 0, 1).unwrap_err();
        assert!(error.public_message().contains("--allow-shared-memory"));
        assert!(memory.status(None).is_err());
        assert!(memory.read("input 'x'", "r", 0, 1).is_err());
    }
}
