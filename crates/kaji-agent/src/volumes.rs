//! Pod volumes materialised as directories under the pod's directory, laid
//! out as kubelet lays them (`<pod dir>/volumes/kubernetes.io~<plugin>/<name>`),
//! and the [`Mount`]s that show them to containers.
//!
//! ConfigMap, Secret, downward API and projected volumes are written the
//! way kubelet's atomic writer writes them: the payload lives in a
//! timestamped directory, `..data` is a symlink to it, and each top-level
//! entry is a symlink through `..data`, so an update (a changed ConfigMap)
//! swaps every file at once by renaming one symlink.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, HostPathVolumeSource, KeyToPath, Volume,
};
use kaji_runtime::Mount;

use crate::downward::{DownwardError, PodContext};
use crate::env::Environment;
use crate::objects::{ObjectCache, SourceKind};

/// Why a volume could not be set up; reported as a `FailedMount` event
/// (`MountVolume.SetUp failed for volume "v" : <message>`).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A non-optional ConfigMap or Secret does not exist.
    #[error("{} \"{name}\" not found", kind.lower())]
    NotFound {
        /// ConfigMap or Secret.
        kind: SourceKind,
        /// Its name.
        name: String,
    },
    /// An item names a key its source lacks.
    #[error("configmap references non-existent config key: {0}")]
    MissingConfigKey(String),
    /// An item names a key its Secret lacks.
    #[error("references non-existent secret key: {0}")]
    MissingSecretKey(String),
    /// The API could not be read.
    #[error("{0}")]
    Api(#[source] kube::Error),
    /// A downward API item is invalid.
    #[error(transparent)]
    Downward(#[from] DownwardError),
    /// A hostPath failed its type check.
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType {
        /// The path.
        path: String,
        /// What `type` asked for.
        expected: &'static str,
    },
    /// A path in the payload or a subPath escapes its volume.
    #[error("invalid path {0:?}: must be relative and must not contain '..'")]
    InvalidPath(String),
    /// The volume's kind is not supported by this agent.
    #[error("unsupported volume type")]
    Unsupported,
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let context = context.into();
    move |source| VolumeError::Io { context, source }
}

/// The files of one atomically written volume: path → (mode, contents).
type Payload = BTreeMap<String, (u32, Vec<u8>)>;

/// A pod's volumes on disk: volume name → host directory (or file).
#[derive(Debug, Default)]
pub struct PodVolumes {
    paths: HashMap<String, PathBuf>,
    /// Hash of each atomically written payload, to skip rewriting it.
    written: HashMap<String, u64>,
}

impl PodVolumes {
    /// Creates or refreshes every volume of the pod under `pod_dir`.
    ///
    /// # Errors
    /// The first volume that fails, with its name.
    pub async fn set_up(
        &mut self,
        ctx: &PodContext<'_>,
        pod_dir: &Path,
        objects: &ObjectCache,
    ) -> Result<(), (String, VolumeError)> {
        let volumes = ctx
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for volume in &volumes {
            let path = self
                .set_up_one(ctx, pod_dir, objects, volume)
                .await
                .map_err(|e| (volume.name.clone(), e))?;
            self.paths.insert(volume.name.clone(), path);
        }
        Ok(())
    }

    async fn set_up_one(
        &mut self,
        ctx: &PodContext<'_>,
        pod_dir: &Path,
        objects: &ObjectCache,
        volume: &Volume,
    ) -> Result<PathBuf, VolumeError> {
        let dir = |plugin: &str| {
            pod_dir
                .join("volumes")
                .join(format!("kubernetes.io~{plugin}"))
                .join(&volume.name)
        };
        let namespace = ctx.pod.metadata.namespace.as_deref().unwrap_or("default");
        if volume.empty_dir.is_some() {
            let path = dir("empty-dir");
            std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
            // emptyDir is world-writable, as kubelet makes it.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                .map_err(io("setting emptyDir permissions"))?;
            return Ok(path);
        }
        if let Some(host) = &volume.host_path {
            return check_host_path(host);
        }
        let (plugin, payload) = if let Some(cm) = &volume.config_map {
            let mode = cm.default_mode.map_or(0o644, mode_bits);
            let payload = key_payload(
                objects,
                SourceKind::ConfigMap,
                namespace,
                &cm.name,
                cm.items.as_deref(),
                cm.optional == Some(true),
                mode,
            )
            .await?;
            ("configmap", payload)
        } else if let Some(secret) = &volume.secret {
            let mode = secret.default_mode.map_or(0o644, mode_bits);
            let name = secret.secret_name.clone().unwrap_or_default();
            let payload = key_payload(
                objects,
                SourceKind::Secret,
                namespace,
                &name,
                secret.items.as_deref(),
                secret.optional == Some(true),
                mode,
            )
            .await?;
            ("secret", payload)
        } else if let Some(d) = &volume.downward_api {
            let mode = d.default_mode.map_or(0o644, mode_bits);
            (
                "downward-api",
                downward_payload(ctx, d.items.as_deref(), mode)?,
            )
        } else if let Some(p) = &volume.projected {
            let mode = p.default_mode.map_or(0o644, mode_bits);
            let mut payload = Payload::new();
            for source in p.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    payload.extend(
                        key_payload(
                            objects,
                            SourceKind::ConfigMap,
                            namespace,
                            &cm.name,
                            cm.items.as_deref(),
                            cm.optional == Some(true),
                            mode,
                        )
                        .await?,
                    );
                } else if let Some(s) = &source.secret {
                    payload.extend(
                        key_payload(
                            objects,
                            SourceKind::Secret,
                            namespace,
                            &s.name,
                            s.items.as_deref(),
                            s.optional == Some(true),
                            mode,
                        )
                        .await?,
                    );
                } else if let Some(d) = &source.downward_api {
                    payload.extend(downward_payload(ctx, d.items.as_deref(), mode)?);
                }
                // serviceAccountToken and clusterTrustBundle sources are not
                // issued by this agent; their files are left out.
            }
            ("projected", payload)
        } else {
            return Err(VolumeError::Unsupported);
        };
        let path = dir(plugin);
        let hash = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            payload.hash(&mut h);
            h.finish()
        };
        if self.written.get(&volume.name) != Some(&hash) || !path.join("..data").exists() {
            write_atomically(&path, &payload)?;
            self.written.insert(volume.name.clone(), hash);
        }
        Ok(path)
    }

    /// The mounts for `container`, after `$(VAR)` expansion of
    /// `subPathExpr` against its environment.
    ///
    /// # Errors
    /// A mount names a volume that was not set up, or a subPath escapes it.
    pub fn mounts(
        &self,
        container: &Container,
        env: &Environment,
    ) -> Result<Vec<Mount>, VolumeError> {
        let mut mounts = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let base = self.paths.get(&m.name).ok_or(VolumeError::Unsupported)?;
            let sub = match (&m.sub_path, &m.sub_path_expr) {
                (Some(p), _) if !p.is_empty() => p.clone(),
                (_, Some(e)) if !e.is_empty() => env.expand(e),
                _ => String::new(),
            };
            let host_path = if sub.is_empty() {
                base.clone()
            } else {
                check_relative(&sub)?;
                let p = base.join(&sub);
                if !p.exists() {
                    std::fs::create_dir_all(&p).map_err(io(format!("creating subPath {sub}")))?;
                }
                p
            };
            mounts.push(Mount {
                container_path: PathBuf::from(&m.mount_path),
                host_path,
                read_only: m.read_only == Some(true),
            });
        }
        Ok(mounts)
    }
}

/// Mode bits from an API `defaultMode`/`mode` (decimal in JSON).
fn mode_bits(mode: i32) -> u32 {
    u32::try_from(mode).unwrap_or(0o644) & 0o777
}

fn check_relative(path: &str) -> Result<(), VolumeError> {
    let p = Path::new(path);
    if path.is_empty()
        || p.is_absolute()
        || p.components().any(|c| matches!(c, Component::ParentDir))
    {
        return Err(VolumeError::InvalidPath(path.to_string()));
    }
    Ok(())
}

/// The files of a ConfigMap or Secret volume: all keys, or the listed items.
async fn key_payload(
    objects: &ObjectCache,
    kind: SourceKind,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default_mode: u32,
) -> Result<Payload, VolumeError> {
    let data = objects
        .get(kind, namespace, name)
        .await
        .map_err(VolumeError::Api)?;
    let Some(data) = data else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(VolumeError::NotFound {
                kind,
                name: name.to_string(),
            })
        };
    };
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data.iter() {
                payload.insert(key.clone(), (default_mode, value.clone()));
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(match kind {
                        SourceKind::ConfigMap => VolumeError::MissingConfigKey(item.key.clone()),
                        SourceKind::Secret => VolumeError::MissingSecretKey(item.key.clone()),
                    });
                };
                let mode = item.mode.map_or(default_mode, mode_bits);
                payload.insert(item.path.clone(), (mode, value.clone()));
            }
        }
    }
    Ok(payload)
}

fn downward_payload(
    ctx: &PodContext<'_>,
    items: Option<&[DownwardAPIVolumeFile]>,
    default_mode: u32,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    for item in items.into_iter().flatten() {
        let value = if let Some(f) = &item.field_ref {
            ctx.field(f)?
        } else if let Some(r) = &item.resource_field_ref {
            ctx.resource(r, "")?
        } else {
            continue;
        };
        let mode = item.mode.map_or(default_mode, mode_bits);
        payload.insert(item.path.clone(), (mode, value.into_bytes()));
    }
    Ok(payload)
}

/// Checks (or creates) a hostPath as its `type` asks; returns the path.
fn check_host_path(host: &HostPathVolumeSource) -> Result<PathBuf, VolumeError> {
    let path = PathBuf::from(&host.path);
    let meta = std::fs::metadata(&path).ok();
    let fail = |expected| VolumeError::HostPathType {
        path: host.path.clone(),
        expected,
    };
    match host.type_.as_deref().unwrap_or("") {
        "" => {}
        "DirectoryOrCreate" => match meta {
            Some(m) if m.is_dir() => {}
            Some(_) => return Err(fail("directory")),
            None => {
                std::fs::create_dir_all(&path).map_err(io(format!("creating {}", host.path)))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(io("setting hostPath permissions"))?;
            }
        },
        "Directory" => {
            if !meta.is_some_and(|m| m.is_dir()) {
                return Err(fail("directory"));
            }
        }
        "FileOrCreate" => match meta {
            Some(m) if m.is_file() => {}
            Some(_) => return Err(fail("file")),
            None => {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io(format!("creating {}", host.path)))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                    .map_err(io("setting hostPath permissions"))?;
            }
        },
        "File" => {
            if !meta.is_some_and(|m| m.is_file()) {
                return Err(fail("file"));
            }
        }
        "Socket" => {
            if !meta.is_some_and(|m| m.file_type().is_socket()) {
                return Err(fail("socket"));
            }
        }
        "CharDevice" => {
            if !meta.is_some_and(|m| m.file_type().is_char_device()) {
                return Err(fail("character device"));
            }
        }
        "BlockDevice" => {
            if !meta.is_some_and(|m| m.file_type().is_block_device()) {
                return Err(fail("block device"));
            }
        }
        _ => return Err(VolumeError::Unsupported),
    }
    Ok(path)
}

/// Replaces the contents of `dir` with `payload` in one step (see the
/// module docs).
fn write_atomically(dir: &Path, payload: &Payload) -> Result<(), VolumeError> {
    for path in payload.keys() {
        check_relative(path)?;
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%9f")
        .to_string();
    let data_dir = dir.join(&stamp);
    std::fs::create_dir_all(&data_dir).map_err(io("creating the payload directory"))?;
    for (path, (mode, contents)) in payload {
        let file = data_dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&file, contents).map_err(io(format!("writing {path}")))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
            .map_err(io(format!("setting the mode of {path}")))?;
    }
    let previous = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).map_err(io("linking ..data_tmp"))?;
    std::fs::rename(&tmp, dir.join("..data")).map_err(io("swapping ..data"))?;

    let top: std::collections::BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)
                .map_err(io(format!("linking {name}")))?;
        }
    }
    // Remove entries the new payload no longer has, and the old payload.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("..") || top.contains(&name) {
                continue;
            }
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = previous.filter(|p| p.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(entries: &[(&str, &str)]) -> Payload {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), (0o644, v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn atomic_writes_swap_every_file_at_once_and_drop_removed_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        write_atomically(&dir, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        write_atomically(&dir, &payload(&[("a", "3")])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(!dir.join("sub").exists());
        let stamps = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("..2")
            })
            .count();
        assert_eq!(stamps, 1, "the old payload is removed");
    }

    #[test]
    fn payload_paths_may_not_escape_the_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let err = write_atomically(tmp.path(), &payload(&[("../x", "1")])).unwrap_err();
        assert!(matches!(err, VolumeError::InvalidPath(_)));
        assert!(check_relative("/abs").is_err());
        assert!(check_relative("ok/path").is_ok());
    }

    #[test]
    fn host_paths_are_type_checked_or_created() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let host = |path: &Path, t: &str| HostPathVolumeSource {
            path: path.display().to_string(),
            type_: Some(t.to_string()),
        };
        assert!(check_host_path(&host(&file, "File")).is_ok());
        let err = check_host_path(&host(&file, "Directory")).unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
        let made = tmp.path().join("made/dir");
        check_host_path(&host(&made, "DirectoryOrCreate")).unwrap();
        assert!(made.is_dir());
        let touched = tmp.path().join("touched");
        check_host_path(&host(&touched, "FileOrCreate")).unwrap();
        assert!(touched.is_file());
        assert!(check_host_path(&host(&tmp.path().join("none"), "File")).is_err());
    }
}
