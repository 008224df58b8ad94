//! Which modules get an adapter: PEFT's `target_modules`, matched against module paths.

use std::collections::HashSet;

use burn::tensor::backend::Backend;
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::model::linear_paths;
use crate::{AdaptableModel, LoraError};

/// PEFT's `target_modules`: which linears of a model get a LoRA adapter.
///
/// Matching follows `peft.tuners.tuners_utils.check_target_module_exists` (peft 0.21) against
/// each adaptable module's path, e.g. `model.layers.0.self_attn.q_proj` (Qwen2/3) or
/// `transformer.h.0.attn.c_attn` (Qwen v1):
/// - [`Names`](Self::Names): a path matches when it equals a name or ends with `.name`, so
///   `q_proj` and `self_attn.q_proj` both select every layer's query projection;
/// - [`Regex`](Self::Regex): the path must match the whole pattern (`re.fullmatch`), so
///   `.*\.layers\.1\.self_attn\.q_proj` selects one layer.
///
/// The paths are those of the model the adapter is attached to (the LLM), never of a
/// surrounding vision-language model, so a vision tower's `q_proj` is never caught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetModules {
    /// A list of module names, matched exactly or as a `.`-suffix.
    Names(Vec<String>),
    /// One regex that must match the whole module path.
    Regex(String),
}

impl TargetModules {
    /// A list of module names (`["c_attn", "w1", "w2"]`), sorted and deduplicated: PEFT
    /// treats the list as a set.
    pub fn names<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self::Names(sorted_unique(names.into_iter().map(Into::into)))
    }

    /// Reads a command-line spec: a `|`- or `,`-separated list of plain module names
    /// (letters, digits, `_`, `.`) is a name list, so `c_attn|w1|w2` targets those three
    /// modules; anything else is a full-path regex.
    ///
    /// PEFT would read the string `c_attn|w1|w2` as a regex over whole paths and match
    /// nothing; this helper exists so that the short spelling works. The adapter file always
    /// stores the PEFT form (a JSON list or a regex string), so PEFT reads it the same way.
    pub fn parse(spec: &str) -> Self {
        let is_name = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        };
        let parts: Vec<&str> = spec.split(['|', ',']).map(str::trim).collect();
        if parts.iter().all(|part| is_name(part)) {
            Self::names(parts)
        } else {
            Self::Regex(spec.to_string())
        }
    }

    /// The PEFT JSON value: a sorted list of names, or the regex string.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Self::Names(names) => Value::from(sorted_unique(names.iter().cloned())),
            Self::Regex(pattern) => Value::from(pattern.as_str()),
        }
    }

    /// Compiles the targets for matching.
    pub(crate) fn matcher(&self) -> Result<TargetMatcher, LoraError> {
        match self {
            Self::Names(names) => Ok(TargetMatcher::Names(names.clone())),
            Self::Regex(pattern) => Regex::new(&format!(r"\A(?:{pattern})\z"))
                .map(TargetMatcher::Regex)
                .map_err(|e| LoraError::InvalidRegex {
                    pattern: pattern.clone(),
                    message: e.to_string(),
                }),
        }
    }
}

/// In a settings file (a training config): a list of names, or one string read with
/// [`TargetModules::parse`] (so `"c_attn|w1|w2"` is those three names, `".*\.q_proj"` a
/// regex).
impl Serialize for TargetModules {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Names(names) => names.serialize(serializer),
            Self::Regex(pattern) => pattern.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for TargetModules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Spec {
            Spec(String),
            Names(Vec<String>),
        }
        Ok(match Spec::deserialize(deserializer)? {
            Spec::Spec(spec) => Self::parse(&spec),
            Spec::Names(names) => Self::names(names),
        })
    }
}

fn sorted_unique(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = names.collect();
    names.sort();
    names.dedup();
    names
}

/// Compiled [`TargetModules`].
pub(crate) enum TargetMatcher {
    Names(Vec<String>),
    Regex(Regex),
}

impl TargetMatcher {
    /// Whether the module at `path` is targeted.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Self::Names(names) => names.iter().any(|name| {
                path == name
                    || path
                        .strip_suffix(name.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }),
            Self::Regex(regex) => regex.is_match(path),
        }
    }
}

/// The paths of the model's adaptable linears that `targets` selects; at least one.
pub(crate) fn resolve_targets<B: Backend, M: AdaptableModel<B>>(
    model: &M,
    targets: &TargetModules,
) -> Result<HashSet<String>, LoraError> {
    let matcher = targets.matcher()?;
    let paths = linear_paths(model);
    let selected: HashSet<String> = paths
        .iter()
        .filter(|path| matcher.matches(path))
        .cloned()
        .collect();
    if selected.is_empty() {
        return Err(LoraError::NoTargetMatched {
            targets: targets.to_json().to_string(),
            examples: paths.iter().take(4).cloned().collect::<Vec<_>>().join(", "),
        });
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(targets: &TargetModules, path: &str) -> bool {
        targets.matcher().expect("compiles").matches(path)
    }

    #[test]
    fn names_match_exactly_or_as_dotted_suffix() {
        let targets = TargetModules::names(["q_proj", "attn.c_proj"]);
        assert!(matches(&targets, "model.layers.0.self_attn.q_proj"));
        assert!(matches(&targets, "q_proj"));
        assert!(matches(&targets, "transformer.h.3.attn.c_proj"));
        assert!(!matches(&targets, "transformer.h.3.mlp.c_proj"));
        assert!(!matches(&targets, "model.layers.0.self_attn.xq_proj"));
    }

    #[test]
    fn a_regex_must_match_the_whole_path() {
        let targets = TargetModules::Regex(r".*\.layers\.1\.self_attn\.(q_proj|v_proj)".into());
        assert!(matches(&targets, "model.layers.1.self_attn.v_proj"));
        assert!(!matches(&targets, "model.layers.11.self_attn.v_proj"));
        assert!(!matches(&targets, "model.layers.1.self_attn.v_proj.x"));
        // As in PEFT, a bare alternation of names is anchored at both ends: it matches no
        // nested path.
        let bare = TargetModules::Regex("c_attn|w1".into());
        assert!(!matches(&bare, "transformer.h.0.attn.c_attn"));
    }

    #[test]
    fn specs_of_plain_names_are_lists_others_regexes() {
        assert_eq!(
            TargetModules::parse("c_attn|w1|w2"),
            TargetModules::names(["c_attn", "w1", "w2"])
        );
        assert_eq!(
            TargetModules::parse("q_proj, v_proj"),
            TargetModules::names(["q_proj", "v_proj"])
        );
        assert_eq!(
            TargetModules::parse(r".*\.mlp\.(w1|w2)"),
            TargetModules::Regex(r".*\.mlp\.(w1|w2)".into())
        );
    }

    #[test]
    fn unsupported_regex_syntax_is_a_typed_error() {
        let err = TargetModules::Regex("(?=q)q_proj".into())
            .matcher()
            .err()
            .expect("look-ahead is not supported");
        assert!(matches!(err, LoraError::InvalidRegex { .. }), "{err:?}");
    }
}
