//! Hugging Face hub ids as model paths: `Qwen/Qwen2.5-0.5B-Instruct` (optionally
//! `@revision`) stands for the snapshot folder of that model in the local Hugging Face cache,
//! downloaded into it first when it is missing and the hub may be reached.
//!
//! Every program flag that names a model folder goes through [`resolve_model_path`], so a
//! folder downloaded by `hf download ORG/NAME` (or by transformers) is used where it lies,
//! without `--local-dir` copies. The rules:
//!
//! - A local path that exists always wins, even when its text is also a valid id.
//! - Otherwise `ORG/NAME[@REVISION]` is looked up in the cache ([`HubCache::from_env`]:
//!   `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), in
//!   `models--ORG--NAME/snapshots/REV`, where `REV` is read from `refs/REVISION` (`main` when
//!   none is given) or is the revision itself when that is a commit hash.
//! - A model missing from the cache is downloaded (its top-level config, tokenizer and
//!   safetensors files) through the `hf-hub` crate, unless `HF_HUB_OFFLINE` is set; offline,
//!   it is a [`HubError::NotCached`] naming the path looked at and the command that downloads
//!   it.
//! - Anything else is returned as the path it spells, for the loader to report as missing.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

/// Why a hub id did not give a local folder. Every message names the id, the cache path
/// involved and how to get the model by hand.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The model (at that revision) is not in the cache, and may not be downloaded.
    #[error(
        "{id} is not in the Hugging Face cache: {} does not exist{}; download it with `{}` \
         (older clients: `huggingface-cli download` with the same arguments), or pass a local \
         folder",
        missing.display(),
        if *offline { " (and HF_HUB_OFFLINE is set, so nothing is downloaded)" } else { "" },
        id.download_command()
    )]
    NotCached {
        /// The model asked for.
        id: HubId,
        /// The ref file or snapshot folder looked for.
        missing: PathBuf,
        /// Whether downloading was ruled out by `HF_HUB_OFFLINE`.
        offline: bool,
    },
    /// Listing or downloading the model's files from the hub failed.
    #[error(
        "{id} is not in the Hugging Face cache ({}) and {what} from the hub failed: {source}; \
         download it with `{}` (set HF_HUB_OFFLINE=1 to stop trying), or pass a local folder",
        cache.display(),
        id.download_command()
    )]
    Download {
        /// The model asked for.
        id: HubId,
        /// The cache folder it was to be downloaded into.
        cache: PathBuf,
        /// What was being done (`listing its files`, `downloading config.json`).
        what: String,
        /// The client's error.
        #[source]
        source: Box<ApiError>,
    },
    /// The cache's ref file exists but cannot be read.
    #[error("cannot read {}, the cache's ref of {id}: {source}", path.display())]
    Ref {
        /// The model asked for.
        id: HubId,
        /// The ref file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// No cache folder could be determined.
    #[error(
        "cannot find the Hugging Face cache for {id}: HF_HUB_CACHE and HF_HOME are unset and \
         the home folder is unknown; set HF_HUB_CACHE"
    )]
    NoCacheDir {
        /// The model asked for.
        id: HubId,
    },
}

/// A model repository on the Hugging Face hub, `ORG/NAME`, optionally at a revision (a
/// branch, tag or commit hash): `Qwen/Qwen2.5-0.5B-Instruct@main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    repo: String,
    revision: Option<String>,
}

impl HubId {
    /// Parses `ORG/NAME` or `ORG/NAME@REVISION`; `None` when the text is not such an id.
    ///
    /// Both names follow the hub's rules (letters, digits, `-`, `_`, `.`; not starting with
    /// `-` or `.`; no `--` or `..`), so relative paths such as `./model` or `a/b/c` are never
    /// ids. A revision is any non-empty text without `..` components or a leading `/` (it
    /// names a file under the cache's `refs/`).
    pub fn parse(text: &str) -> Option<Self> {
        let (repo, revision) = match text.split_once('@') {
            Some((repo, revision)) => (repo, Some(revision)),
            None => (text, None),
        };
        let (org, name) = repo.split_once('/')?;
        if !valid_name(org) || !valid_name(name) {
            return None;
        }
        if let Some(revision) = revision {
            let inside = Path::new(revision)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
            if revision.is_empty() || !inside {
                return None;
            }
        }
        Some(Self {
            repo: repo.to_string(),
            revision: revision.map(str::to_string),
        })
    }

    /// `ORG/NAME`.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// The revision asked for, if any (the cache's `main` ref is used without one).
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    /// The command that downloads this model into the cache.
    pub fn download_command(&self) -> String {
        match &self.revision {
            Some(revision) => format!("hf download {} --revision {revision}", self.repo),
            None => format!("hf download {}", self.repo),
        }
    }

    fn hf_repo(&self) -> Repo {
        Repo::with_revision(
            self.repo.clone(),
            RepoType::Model,
            self.revision.clone().unwrap_or_else(|| "main".to_string()),
        )
    }
}

impl fmt::Display for HubId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.revision {
            Some(revision) => write!(f, "{}@{revision}", self.repo),
            None => f.write_str(&self.repo),
        }
    }
}

/// A hub name part: `[A-Za-z0-9_.-]+`, not starting with `-` or `.`, without `--` or `..`.
fn valid_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !name.is_empty()
        && name.len() <= 96
        && name.chars().all(allowed)
        && !name.starts_with(['-', '.'])
        && !name.contains("--")
        && !name.contains("..")
}

/// What a model flag names: a local path, or a model on the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A file or folder on this machine (possibly missing: the loader reports it).
    Local(PathBuf),
    /// A model in (or to be downloaded into) the Hugging Face cache.
    Hub(HubId),
}

impl ModelSource {
    /// A path that exists is local, whatever its text; else an `ORG/NAME[@REVISION]` is a
    /// hub id; else the text is a (missing) local path.
    pub fn parse(text: &str) -> Self {
        let path = Path::new(text);
        if path.exists() {
            return Self::Local(path.to_path_buf());
        }
        match HubId::parse(text) {
            Some(id) => Self::Hub(id),
            None => Self::Local(path.to_path_buf()),
        }
    }
}

/// The local Hugging Face hub cache (`models--ORG--NAME/{refs,snapshots,blobs}`), whether
/// models missing from it may be downloaded, and from where.
#[derive(Clone)]
pub struct HubCache {
    dir: PathBuf,
    offline: bool,
    endpoint: Option<String>,
    token: Option<String>,
}

impl fmt::Debug for HubCache {
    /// Everything but the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubCache")
            .field("dir", &self.dir)
            .field("offline", &self.offline)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl HubCache {
    /// The cache in `dir`, downloading what is missing from `https://huggingface.co` with the
    /// token file of the cache's parent folder, if any (as `hf-hub` does).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            offline: false,
            endpoint: None,
            token: None,
        }
    }

    /// The cache Hugging Face's own tools use: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`; offline when `HF_HUB_OFFLINE` is `1`, `true`, `yes` or
    /// `on`; downloading from `HF_ENDPOINT` with the token `HF_TOKEN` when they are set.
    /// `None` only when none of the cache variables is set and the home folder is unknown.
    pub fn from_env() -> Option<Self> {
        let var = |name| std::env::var_os(name).filter(|value| !value.is_empty());
        let dir = match (var("HF_HUB_CACHE"), var("HF_HOME")) {
            (Some(cache), _) => PathBuf::from(cache),
            (None, Some(home)) => PathBuf::from(home).join("hub"),
            (None, None) => std::env::home_dir()?.join(".cache/huggingface/hub"),
        };
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|value| {
            matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        let mut cache = Self::new(dir).with_offline(offline);
        cache.endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty());
        cache.token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
        Some(cache)
    }

    /// This cache, downloading from `endpoint` (`https://huggingface.co` or a mirror).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// This cache, never downloading when `offline`.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether models missing from the cache are left undownloaded.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The folder of `text` ([`ModelSource::parse`]): a local path as it is, a hub id
    /// resolved by [`resolve`](Self::resolve).
    pub fn resolve_path(&self, text: &str) -> Result<PathBuf, HubError> {
        match ModelSource::parse(text) {
            ModelSource::Local(path) => Ok(path),
            ModelSource::Hub(id) => self.resolve(&id),
        }
    }

    /// The snapshot folder of `id`, downloaded first when it is not in the cache and the
    /// cache is not offline.
    pub fn resolve(&self, id: &HubId) -> Result<PathBuf, HubError> {
        match self.cached(id) {
            Err(HubError::NotCached { .. }) if !self.offline => {
                self.download(id)?;
                self.cached(id)
            }
            found => found,
        }
    }

    /// The snapshot folder of `id` already in the cache: `snapshots/REV`, with `REV` read
    /// from `refs/REVISION` (`refs/main` without a revision), or the revision itself when it
    /// names a snapshot folder (a commit hash).
    pub fn cached(&self, id: &HubId) -> Result<PathBuf, HubError> {
        let repo_dir = self.dir.join(id.hf_repo().folder_name());
        let revision = id.revision().unwrap_or("main");
        let ref_path = repo_dir.join("refs").join(revision);
        let not_cached = |missing| HubError::NotCached {
            id: id.clone(),
            missing,
            offline: self.offline,
        };
        let commit = match std::fs::read_to_string(&ref_path) {
            Ok(commit) => commit.trim().to_string(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let direct = repo_dir.join("snapshots").join(revision);
                if is_commit_hash(revision) {
                    return match direct.is_dir() {
                        true => Ok(direct),
                        false => Err(not_cached(direct)),
                    };
                }
                return Err(not_cached(ref_path));
            }
            Err(source) => {
                return Err(HubError::Ref {
                    id: id.clone(),
                    path: ref_path,
                    source,
                })
            }
        };
        let snapshot = repo_dir.join("snapshots").join(commit);
        match snapshot.is_dir() {
            true => Ok(snapshot),
            false => Err(not_cached(snapshot)),
        }
    }

    /// Downloads the top-level files of `id` a model folder needs ([`is_model_file`]) into
    /// the cache, through `hf-hub`.
    fn download(&self, id: &HubId) -> Result<(), HubError> {
        let failed = |what: String| {
            let id = id.clone();
            let cache = self.dir.clone();
            move |source| HubError::Download {
                id,
                cache,
                what,
                source: Box::new(source),
            }
        };
        let mut builder = ApiBuilder::from_cache(Cache::new(self.dir.clone()));
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(token) = &self.token {
            builder = builder.with_token(Some(token.clone()));
        }
        let api = builder
            .build()
            .map_err(failed("starting the client".into()))?;
        let repo = api.repo(id.hf_repo());
        let info = repo.info().map_err(failed("listing its files".into()))?;
        for file in info.siblings.iter().map(|s| s.rfilename.as_str()) {
            if is_model_file(file) {
                repo.get(file)
                    .map_err(failed(format!("downloading {file}")))?;
            }
        }
        Ok(())
    }
}

/// Whether a repository file belongs in a model folder this project reads: top-level
/// configs (`*.json`), weights (`*.safetensors`) and tokenizer files (`*.txt`, `*.tiktoken`,
/// `*.model`). PyTorch, TensorFlow, ONNX and GGUF weights and subfolders are skipped.
pub fn is_model_file(name: &str) -> bool {
    let extension = Path::new(name).extension().and_then(|e| e.to_str());
    !name.contains('/')
        && matches!(
            extension,
            Some("json" | "safetensors" | "txt" | "tiktoken" | "model")
        )
}

/// A full 40-hex-digit git commit hash.
fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

/// The folder (or file) a model flag names: a local path that exists as it is, else an
/// `ORG/NAME[@REVISION]` hub id resolved in the cache of [`HubCache::from_env`] (downloaded
/// when missing, unless `HF_HUB_OFFLINE` is set), else the text as a path.
///
/// Its signature fits clap's `value_parser`, so a program's flags resolve as they parse.
pub fn resolve_model_path(text: &str) -> Result<PathBuf, HubError> {
    match ModelSource::parse(text) {
        ModelSource::Local(path) => Ok(path),
        ModelSource::Hub(id) => match HubCache::from_env() {
            Some(cache) => cache.resolve(&id),
            None => Err(HubError::NoCacheDir { id }),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    const MAIN: &str = "0123456789abcdef0123456789abcdef01234567";
    const OTHER: &str = "fedcba9876543210fedcba9876543210fedcba98";

    /// A cache holding `org/name` at two snapshots, `refs/main` -> MAIN, `refs/v2` -> OTHER.
    fn cache() -> (tempfile::TempDir, HubCache) {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("models--org--name");
        for (reference, commit) in [("main", MAIN), ("v2", OTHER)] {
            std::fs::create_dir_all(repo.join("snapshots").join(commit)).expect("snapshot");
            std::fs::create_dir_all(repo.join("refs")).expect("refs");
            std::fs::write(repo.join("refs").join(reference), format!("{commit}\n")).expect("ref");
        }
        let cache = HubCache::new(dir.path()).with_offline(true);
        (dir, cache)
    }

    fn id(text: &str) -> HubId {
        HubId::parse(text).unwrap_or_else(|| panic!("{text} is an id"))
    }

    #[test]
    fn ids_parse_and_paths_do_not() {
        let parsed = id("Qwen/Qwen2.5-0.5B-Instruct@refs/pr/1");
        assert_eq!(parsed.repo(), "Qwen/Qwen2.5-0.5B-Instruct");
        assert_eq!(parsed.revision(), Some("refs/pr/1"));
        assert_eq!(parsed.to_string(), "Qwen/Qwen2.5-0.5B-Instruct@refs/pr/1");
        assert_eq!(id("a/b").revision(), None);
        for path in [
            "model", "./a", "a/b/c", "/a/b", "../a", "a/", "a/.b", "a--x/b", "a/b@", "a/b@../x",
            "a/b@/x", "a b/c",
        ] {
            assert_eq!(HubId::parse(path), None, "{path}");
        }
    }

    #[test]
    fn the_main_ref_another_ref_and_a_commit_hash_pick_their_snapshots() {
        let (dir, cache) = cache();
        let snapshots = dir.path().join("models--org--name/snapshots");
        assert_eq!(
            cache.resolve(&id("org/name")).unwrap(),
            snapshots.join(MAIN)
        );
        assert_eq!(
            cache.resolve(&id("org/name@v2")).unwrap(),
            snapshots.join(OTHER)
        );
        let direct = format!("org/name@{OTHER}");
        assert_eq!(cache.resolve(&id(&direct)).unwrap(), snapshots.join(OTHER));
        assert_eq!(cache.resolve_path(&direct).unwrap(), snapshots.join(OTHER));
    }

    #[test]
    fn a_missing_model_names_the_path_looked_at_and_the_download_command() {
        let (dir, cache) = cache();
        let err = cache.resolve(&id("org/other")).unwrap_err();
        let looked_at = dir.path().join("models--org--other/refs/main");
        assert!(
            matches!(&err, HubError::NotCached { missing, offline: true, .. } if *missing == looked_at),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&looked_at.display().to_string()),
            "{message}"
        );
        assert!(message.contains("`hf download org/other`"), "{message}");
        assert!(message.contains("HF_HUB_OFFLINE"), "{message}");

        let err = cache.resolve(&id("org/name@v3")).unwrap_err();
        assert!(err
            .to_string()
            .contains("hf download org/name --revision v3"));

        // A ref whose snapshot folder is gone names the snapshot.
        let repo = dir.path().join("models--org--name");
        std::fs::remove_dir(repo.join("snapshots").join(OTHER)).expect("remove snapshot");
        let err = cache.resolve(&id("org/name@v2")).unwrap_err();
        let snapshot = repo.join("snapshots").join(OTHER).display().to_string();
        assert!(err.to_string().contains(&snapshot), "{err}");
        let err = cache
            .resolve(&id(&format!("org/name@{OTHER}")))
            .unwrap_err();
        assert!(err.to_string().contains(&snapshot), "{err}");
    }

    #[test]
    fn a_local_path_wins_over_an_id_of_the_same_text() {
        let (_dir, cache) = cache();
        // Tests run in the package folder, where `src/hub.rs` is a file and also a valid id.
        assert!(HubId::parse("src/hub.rs").is_some());
        assert_eq!(
            ModelSource::parse("src/hub.rs"),
            ModelSource::Local(PathBuf::from("src/hub.rs"))
        );
        assert_eq!(
            cache.resolve_path("src/hub.rs").unwrap(),
            PathBuf::from("src/hub.rs")
        );
        assert_eq!(
            ModelSource::parse("org/name"),
            ModelSource::Hub(id("org/name"))
        );
        assert_eq!(
            cache.resolve_path("no/such/folder").unwrap(),
            PathBuf::from("no/such/folder"),
            "a missing path that is no id is left for the loader to report"
        );
    }

    /// The files of `org/remote` on the fake hub (the `.bin` is never to be downloaded).
    const REMOTE_FILES: &[(&str, &[u8])] = &[
        ("config.json", b"{\"model_type\": \"qwen2\"}"),
        ("model.safetensors", b"not really safetensors"),
        ("pytorch_model.bin", b"pickled weights"),
    ];

    /// A hub holding `org/remote` at commit MAIN, answering like huggingface.co (file list,
    /// `Range` requests with `etag`, `x-repo-commit` and `content-range`) on 127.0.0.1, for at
    /// most 16 connections. Returns its endpoint and the paths requested so far.
    fn fake_hub() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let requested = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requested);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(16) {
                let Ok(mut stream) = stream else { continue };
                let (path, range) = read_request(&stream);
                log.lock().expect("log").push(path.clone());
                let _ = stream.write_all(&respond(&path, range));
            }
        });
        (endpoint, requested)
    }

    /// The path and the `Range: bytes=START-[END]` bounds of a request.
    fn read_request(stream: &TcpStream) -> (String, (usize, Option<usize>)) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut range = (0, None);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                break;
            }
            if let Some(bytes) = header.to_ascii_lowercase().strip_prefix("range: bytes=") {
                let (start, end) = bytes.trim().split_once('-').unwrap_or(("0", ""));
                range = (start.parse().unwrap_or(0), end.parse().ok());
            }
        }
        (path, range)
    }

    /// The fake hub's answer to `path`.
    fn respond(path: &str, (start, end): (usize, Option<usize>)) -> Vec<u8> {
        let file = REMOTE_FILES
            .iter()
            .find(|(name, _)| path == format!("/org/remote/resolve/main/{name}"));
        let (status, headers, body) = if path == "/api/models/org/remote/revision/main" {
            let siblings: Vec<String> = REMOTE_FILES
                .iter()
                .map(|(name, _)| format!("{{\"rfilename\": \"{name}\"}}"))
                .collect();
            let body = format!(
                "{{\"sha\": \"{MAIN}\", \"siblings\": [{}]}}",
                siblings.join(", ")
            );
            ("200 OK", String::new(), body.into_bytes())
        } else if let Some((name, bytes)) = file {
            let end = end.map_or(bytes.len(), |end| end + 1).min(bytes.len());
            let headers = format!(
                "etag: \"blob-{name}\"\r\nx-repo-commit: {MAIN}\r\n\
                 content-range: bytes {start}-{}/{}\r\n",
                end - 1,
                bytes.len()
            );
            ("206 Partial Content", headers, bytes[start..end].to_vec())
        } else {
            ("404 Not Found", String::new(), Vec::new())
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend(body);
        response
    }

    #[test]
    fn a_model_missing_from_the_cache_is_downloaded_without_its_other_weights() {
        let (endpoint, requested) = fake_hub();
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = HubCache::new(dir.path()).with_endpoint(endpoint);
        let snapshot = cache.resolve(&id("org/remote")).expect("downloaded");
        let repo = dir.path().join("models--org--remote");
        assert_eq!(snapshot, repo.join("snapshots").join(MAIN));
        for (name, bytes) in &REMOTE_FILES[..2] {
            assert_eq!(std::fs::read(snapshot.join(name)).expect(name), *bytes);
        }
        assert!(!snapshot.join("pytorch_model.bin").exists());
        let requested = requested.lock().expect("log").clone();
        assert!(
            requested.iter().all(|path| !path.ends_with(".bin")),
            "{requested:?}"
        );
        let main = std::fs::read_to_string(repo.join("refs/main")).expect("ref");
        assert_eq!(main.trim(), MAIN);
        // Now cached: found offline.
        let offline = cache.with_offline(true);
        assert_eq!(offline.resolve(&id("org/remote")).unwrap(), snapshot);
    }

    #[test]
    fn model_files_are_top_level_configs_weights_and_tokenizers() {
        for name in [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json",
            "merges.txt",
            "qwen.tiktoken",
        ] {
            assert!(is_model_file(name), "{name}");
        }
        for name in [
            "pytorch_model.bin",
            "onnx/model.onnx",
            "README.md",
            "sub/config.json",
        ] {
            assert!(!is_model_file(name), "{name}");
        }
    }
}
