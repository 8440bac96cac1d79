//! Images are local binaries: the image → executable map of the sandbox.
//!
//! A container image here is a name for a binary the workspace built (`ferrokv/node:*` →
//! `ferrokv-node`). A Pod spec written for a real cluster must run unchanged, so `command`
//! is honoured the way an image's filesystem would honour it: a `command[0]` naming one of the
//! image's executables (bare or by an absolute path such as `/usr/local/bin/ferrokv-node`) runs
//! that binary; any other absolute path or bare name runs the host's program of that name, as if
//! the image were built on the host's base layer (so `sh -c` works).

use std::path::{Path, PathBuf};

/// One image: the binary its entrypoint runs and the other executables it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Repository path the image name must end with, without registry or tag: `ferrokv/node`.
    pub repository: String,
    /// What runs when the container has no `command`.
    pub entrypoint: PathBuf,
    /// Executables `command[0]` can name, by file name (the entrypoint is always one of them).
    pub executables: Vec<PathBuf>,
}

/// The image → binary map of a sandbox.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageMap {
    images: Vec<Image>,
}

/// A container's program once its image is resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub path: PathBuf,
    pub args: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("image {0:?} is not in the sandbox image map")]
    UnknownImage(String),
    #[error("container has neither a command nor an image entrypoint")]
    NoCommand,
}

impl ImageMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an image whose entrypoint is `binary`.
    pub fn with(mut self, repository: &str, binary: impl Into<PathBuf>) -> Self {
        let binary = binary.into();
        self.images.push(Image {
            repository: repository.to_owned(),
            entrypoint: binary.clone(),
            executables: vec![binary],
        });
        self
    }

    /// The ferrokv images, from the workspace's build output dir (`target/debug`).
    pub fn ferrokv(bin_dir: &Path) -> Self {
        Self::new()
            .with("ferrokv/node", bin_dir.join("ferrokv-node"))
            .with("ferrokv/operator", bin_dir.join("ferrokv-operator"))
            .with("ferrokv/sandbox-testimg", bin_dir.join("sandbox-testimg"))
    }

    pub fn images(&self) -> &[Image] {
        &self.images
    }

    /// The image an image reference names: `registry:5000/ferrokv/node:0.1@sha256:..` →
    /// `ferrokv/node`. The repository must match whole path segments, so `ferrokv/nodes` is not
    /// `ferrokv/node`.
    pub fn lookup(&self, reference: &str) -> Option<&Image> {
        let repository = repository_of(reference);
        self.images.iter().find(|image| {
            repository == image.repository
                || repository
                    .strip_suffix(image.repository.as_str())
                    .is_some_and(|prefix| prefix.ends_with('/'))
        })
    }

    /// The program a container runs: Kubernetes' rules for `command` and `args` over an image
    /// whose ENTRYPOINT is its binary and whose CMD is empty.
    pub fn program(&self, image: &str, command: &[String], args: &[String]) -> Result<Program, Error> {
        let image = self
            .lookup(image)
            .ok_or_else(|| Error::UnknownImage(image.to_owned()))?;
        match command.split_first() {
            None => Ok(Program {
                path: image.entrypoint.clone(),
                args: args.to_vec(),
            }),
            Some((first, rest)) => {
                let mut all = rest.to_vec();
                all.extend_from_slice(args);
                Ok(Program {
                    path: image.resolve(first),
                    args: all,
                })
            }
        }
    }

    /// Resolves an exec probe's or hook's `command` (no `args`) in an image.
    pub fn exec_program(&self, image: &str, command: &[String]) -> Result<Program, Error> {
        if command.is_empty() {
            return Err(Error::NoCommand);
        }
        self.program(image, command, &[])
    }
}

impl Image {
    /// The executable a `command[0]` names inside this image.
    fn resolve(&self, name: &str) -> PathBuf {
        let file_name = Path::new(name).file_name();
        self.executables
            .iter()
            .find(|exe| exe.file_name().is_some() && exe.file_name() == file_name)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(name))
    }
}

/// `host:port/path/name:tag@digest` → `path/name`, and Docker Hub's implicit `library/` kept as
/// written (nobody maps `library/*` images here).
fn repository_of(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let without_tag = match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    // A first segment with a '.' or ':' or equal to "localhost" is a registry host.
    match without_tag.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => rest,
        _ => without_tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ImageMap {
        ImageMap::ferrokv(Path::new("/w/target/debug"))
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn repository_strips_registry_tag_and_digest() {
        assert_eq!(repository_of("ferrokv/node"), "ferrokv/node");
        assert_eq!(repository_of("ferrokv/node:0.1"), "ferrokv/node");
        assert_eq!(repository_of("ghcr.io/ferrokv/node:0.1"), "ferrokv/node");
        assert_eq!(repository_of("localhost:5000/ferrokv/node@sha256:abc"), "ferrokv/node");
        assert_eq!(repository_of("localhost/ferrokv/node:dev"), "ferrokv/node");
    }

    #[test]
    fn lookup_matches_whole_segments() {
        let map = map();
        assert!(map.lookup("ghcr.io/ferrokv/node:1").is_some());
        assert!(map.lookup("acme/ferrokv/node").is_some());
        assert!(map.lookup("ferrokv/nodes").is_none());
        assert!(map.lookup("xferrokv/node").is_none());
        assert!(map.lookup("redis:7").is_none());
    }

    #[test]
    fn entrypoint_with_args_when_no_command() {
        let program = map()
            .program("ferrokv/node:1", &[], &strings(&["serve", "--port", "6379"]))
            .ok();
        assert_eq!(
            program,
            Some(Program {
                path: "/w/target/debug/ferrokv-node".into(),
                args: strings(&["serve", "--port", "6379"])
            })
        );
    }

    #[test]
    fn command_naming_the_image_binary_maps_to_it() {
        let map = map();
        for name in ["ferrokv-node", "/usr/local/bin/ferrokv-node"] {
            let program = map
                .program(
                    "ferrokv/node",
                    &strings(&[name, "restore"]),
                    &strings(&["--from", "s3"]),
                )
                .ok();
            assert_eq!(
                program,
                Some(Program {
                    path: "/w/target/debug/ferrokv-node".into(),
                    args: strings(&["restore", "--from", "s3"])
                })
            );
        }
    }

    #[test]
    fn other_commands_run_from_the_host() {
        let program = map()
            .program("ferrokv/node", &strings(&["sh", "-c", "echo hi"]), &[])
            .ok();
        assert_eq!(
            program,
            Some(Program {
                path: "sh".into(),
                args: strings(&["-c", "echo hi"])
            })
        );
    }

    #[test]
    fn unknown_image_is_an_error() {
        assert_eq!(
            map().program("redis:7", &[], &[]),
            Err(Error::UnknownImage("redis:7".into()))
        );
        assert_eq!(map().exec_program("ferrokv/node", &[]), Err(Error::NoCommand));
    }
}
