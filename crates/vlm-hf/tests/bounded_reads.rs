//! Config files a user names are read with a size limit: an endless file is refused with an
//! error naming it and the limit.

use std::path::Path;

use vlm_hf::{read_config, HfError, PreprocessorConfig};

#[test]
fn an_endless_config_is_refused_naming_the_file_and_the_limit() {
    let err = read_config::<serde_json::Value>("/dev/zero").unwrap_err();
    assert!(matches!(&err, HfError::Io { path, .. } if path == Path::new("/dev/zero")));
    let text = err.to_string();
    assert!(
        text.contains("/dev/zero") && text.contains("64 MiB limit"),
        "{text}"
    );
    assert!(PreprocessorConfig::from_file("/dev/zero").is_err());
}
