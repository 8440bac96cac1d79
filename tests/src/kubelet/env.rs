//! A container's environment: `env`, `envFrom`, `valueFrom` sources and `$(VAR)` expansion.
//!
//! Resolution is pure: the worker fetches every ConfigMap and Secret a Pod references once
//! ([`Sources`]) and this module turns them, the Pod's facts and the container spec into the
//! exact variables kubelet would set, with kubelet's ordering (`envFrom` first, then `env` in
//! order, each value expanded against what was defined before it) and its `$(VAR)` grammar
//! (`$$` escapes, unknown or unterminated references stay literal).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVarSource, ObjectFieldSelector, ResourceFieldSelector, Secret,
};

/// What the downward API can say about a Pod.
#[derive(Clone, Debug, Default)]
pub struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node_name: String,
    pub service_account: String,
    pub pod_ip: String,
    pub host_ip: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The ConfigMaps and Secrets of a Pod's namespace it references, `None` when absent.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("configmap {0:?} not found")]
    ConfigMapMissing(String),
    #[error("secret {0:?} not found")]
    SecretMissing(String),
    #[error("key {key:?} not found in {kind} {name:?}")]
    KeyMissing {
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("unsupported field path {0:?}")]
    FieldPath(String),
    #[error("unsupported resource field {0:?}")]
    ResourceField(String),
    #[error("secret {name:?} key {key:?} is not valid UTF-8")]
    NotUtf8 { name: String, key: String },
}

/// Expands `$(VAR)` references in `input` with `lookup`, following Kubernetes'
/// `third_party/forked/golang/expansion`: `$$` is a literal `$`, an undefined or unterminated
/// reference is kept as written, and a `$` before any other character is kept.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            match bytes[cursor + 1] {
                b'$' => {
                    out.push('$');
                    cursor += 1;
                }
                b'(' => match input[cursor + 2..].find(')') {
                    Some(len) => {
                        let name = &input[cursor + 2..cursor + 2 + len];
                        match lookup(name) {
                            Some(value) => out.push_str(&value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        cursor += 2 + len;
                    }
                    None => {
                        out.push_str("$(");
                        cursor += 1;
                    }
                },
                _ => out.push('$'),
            }
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    out
}

/// Expands a list of strings (command, args) against a resolved environment.
pub fn expand_all(items: &[String], env: &[(String, String)]) -> Vec<String> {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    items
        .iter()
        .map(|item| expand(item, |name| map.get(name).map(|v| (*v).to_owned())))
        .collect()
}

/// The environment of `container`, in definition order (later duplicates replace earlier ones
/// in place, as a process environment has one value per name).
///
/// `extra` comes first (`KUBERNETES_SERVICE_*`, `HOSTNAME`), as kubelet's service variables do.
pub fn resolve(
    container: &Container,
    facts: &PodFacts,
    sources: &Sources,
    node_allocatable: &Allocatable,
    extra: &[(String, String)],
) -> Result<Vec<(String, String)>, Error> {
    let mut env = Env::default();
    for (name, value) in extra {
        env.set(name.clone(), value.clone());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(cm_ref) = &from.config_map_ref {
            let optional = cm_ref.optional.unwrap_or(false);
            match sources.config_maps.get(&cm_ref.name).and_then(Option::as_ref) {
                Some(cm) => {
                    for (key, value) in cm.data.iter().flatten() {
                        env.set_if_valid(format!("{prefix}{key}"), value.clone());
                    }
                }
                None if optional => {}
                None => return Err(Error::ConfigMapMissing(cm_ref.name.clone())),
            }
        }
        if let Some(secret_ref) = &from.secret_ref {
            let optional = secret_ref.optional.unwrap_or(false);
            match sources.secrets.get(&secret_ref.name).and_then(Option::as_ref) {
                Some(secret) => {
                    for (key, value) in secret_entries(secret) {
                        let value = String::from_utf8(value).map_err(|_| Error::NotUtf8 {
                            name: secret_ref.name.clone(),
                            key: key.clone(),
                        })?;
                        env.set_if_valid(format!("{prefix}{key}"), value);
                    }
                }
                None if optional => {}
                None => return Err(Error::SecretMissing(secret_ref.name.clone())),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            Some(source) => match value_from(source, container, facts, sources, node_allocatable)? {
                Some(value) => value,
                None => continue,
            },
            None => {
                let raw = var.value.clone().unwrap_or_default();
                expand(&raw, |name| env.get(name))
            }
        };
        env.set(var.name.clone(), value);
    }
    Ok(env.vars)
}

#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn set(&mut self, name: String, value: String) {
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    /// `envFrom` keys that are not valid variable names are skipped, as kubelet does.
    fn set_if_valid(&mut self, name: String, value: String) {
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if valid {
            self.set(name, value);
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }
}

/// A secret's entries, `stringData` never being stored by the apiserver but honoured anyway.
pub fn secret_entries(secret: &Secret) -> Vec<(String, Vec<u8>)> {
    let mut entries: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        entries.insert(k.clone(), v.clone().into_bytes());
    }
    entries.into_iter().collect()
}

/// A ConfigMap's entries, text and binary.
pub fn config_map_entries(cm: &ConfigMap) -> Vec<(String, Vec<u8>)> {
    let mut entries: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        entries.insert(k.clone(), v.0.clone());
    }
    entries.into_iter().collect()
}

/// `Ok(None)`: an optional source that is absent, so the variable is not set.
fn value_from(
    source: &EnvVarSource,
    container: &Container,
    facts: &PodFacts,
    sources: &Sources,
    allocatable: &Allocatable,
) -> Result<Option<String>, Error> {
    if let Some(field) = &source.field_ref {
        return field_value(field, facts).map(Some);
    }
    if let Some(resource) = &source.resource_field_ref {
        return resource_value(resource, Some(container), allocatable).map(Some);
    }
    if let Some(key_ref) = &source.config_map_key_ref {
        let optional = key_ref.optional.unwrap_or(false);
        let Some(cm) = sources.config_maps.get(&key_ref.name).and_then(Option::as_ref) else {
            return if optional {
                Ok(None)
            } else {
                Err(Error::ConfigMapMissing(key_ref.name.clone()))
            };
        };
        return match cm.data.as_ref().and_then(|d| d.get(&key_ref.key)) {
            Some(value) => Ok(Some(value.clone())),
            None if optional => Ok(None),
            None => Err(Error::KeyMissing {
                kind: "configmap",
                name: key_ref.name.clone(),
                key: key_ref.key.clone(),
            }),
        };
    }
    if let Some(key_ref) = &source.secret_key_ref {
        let optional = key_ref.optional.unwrap_or(false);
        let Some(secret) = sources.secrets.get(&key_ref.name).and_then(Option::as_ref) else {
            return if optional {
                Ok(None)
            } else {
                Err(Error::SecretMissing(key_ref.name.clone()))
            };
        };
        return match secret_entries(secret).into_iter().find(|(k, _)| *k == key_ref.key) {
            Some((_, value)) => String::from_utf8(value).map(Some).map_err(|_| Error::NotUtf8 {
                name: key_ref.name.clone(),
                key: key_ref.key.clone(),
            }),
            None if optional => Ok(None),
            None => Err(Error::KeyMissing {
                kind: "secret",
                name: key_ref.name.clone(),
                key: key_ref.key.clone(),
            }),
        };
    }
    Ok(Some(String::new()))
}

/// The downward API's `fieldRef` paths.
pub fn field_value(field: &ObjectFieldSelector, facts: &PodFacts) -> Result<String, Error> {
    let path = field.field_path.as_str();
    let value = match path {
        "metadata.name" => facts.name.clone(),
        "metadata.namespace" => facts.namespace.clone(),
        "metadata.uid" => facts.uid.clone(),
        "metadata.labels" => format_map(&facts.labels),
        "metadata.annotations" => format_map(&facts.annotations),
        "spec.nodeName" => facts.node_name.clone(),
        "spec.serviceAccountName" => facts.service_account.clone(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        _ => {
            if let Some(key) = subscript(path, "metadata.labels") {
                facts.labels.get(key).cloned().unwrap_or_default()
            } else if let Some(key) = subscript(path, "metadata.annotations") {
                facts.annotations.get(key).cloned().unwrap_or_default()
            } else {
                return Err(Error::FieldPath(path.to_owned()));
            }
        }
    };
    Ok(value)
}

/// `metadata.labels['app']` → `app`.
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?.strip_prefix('[')?.strip_suffix(']')?;
    rest.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
}

/// Labels and annotations as the downward API writes them: `key="value"` lines, sorted.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the node offers, used when a container sets no limit (kubelet's rule).
#[derive(Clone, Debug)]
pub struct Allocatable {
    pub cpu: String,
    pub memory: String,
}

/// The downward API's `resourceFieldRef`: the limit or request divided by the divisor, rounded up.
pub fn resource_value(
    field: &ResourceFieldSelector,
    container: Option<&Container>,
    allocatable: &Allocatable,
) -> Result<String, Error> {
    let resources = container.and_then(|c| c.resources.as_ref());
    let (kind, resource) = field
        .resource
        .split_once('.')
        .ok_or_else(|| Error::ResourceField(field.resource.clone()))?;
    let declared = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(Error::ResourceField(field.resource.clone())),
    }
    .and_then(|map| map.get(resource))
    .map(|q| q.0.clone());
    let quantity = match (declared, kind, resource) {
        (Some(q), _, _) => q,
        (None, "limits", "cpu") => allocatable.cpu.clone(),
        (None, "limits", "memory") => allocatable.memory.clone(),
        (None, "requests", _) => "0".to_owned(),
        (None, _, _) => return Err(Error::ResourceField(field.resource.clone())),
    };
    let value = parse_quantity(&quantity).ok_or_else(|| Error::ResourceField(quantity.clone()))?;
    let divisor = match &field.divisor {
        Some(d) => parse_quantity(&d.0).ok_or_else(|| Error::ResourceField(d.0.clone()))?,
        None => 1.0,
    };
    if divisor <= 0.0 {
        return Err(Error::ResourceField(field.resource.clone()));
    }
    Ok(format!("{}", (value / divisor).ceil() as i64))
}

/// A Kubernetes quantity as a number: `500m` → 0.5, `1Gi` → 2^30, `1e3` → 1000.
pub fn parse_quantity(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        s => {
            let exp: i32 = s.strip_prefix(['e', 'E'])?.parse().ok()?;
            10f64.powi(exp)
        }
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, ResourceRequirements, SecretKeySelector,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn expansion_follows_kubernetes_grammar() {
        let lookup = vars(&[("A", "x"), ("B", "y$(A)"), ("EMPTY", "")]);
        assert_eq!(expand("$(A)", &lookup), "x");
        assert_eq!(expand("pre-$(A)-$(A)-post", &lookup), "pre-x-x-post");
        assert_eq!(expand("$(B)", &lookup), "y$(A)", "values are not expanded twice");
        assert_eq!(expand("$(MISSING)", &lookup), "$(MISSING)");
        assert_eq!(expand("$$(A)", &lookup), "$(A)");
        assert_eq!(expand("$$$(A)", &lookup), "$x");
        assert_eq!(expand("$A", &lookup), "$A");
        assert_eq!(expand("$(A", &lookup), "$(A");
        assert_eq!(expand("a$", &lookup), "a$");
        assert_eq!(expand("$(EMPTY)z", &lookup), "z");
        assert_eq!(expand("é$(A)ü$", &lookup), "éxü$");
        assert_eq!(expand("$é", &lookup), "$é");
        assert_eq!(expand("", &lookup), "");
    }

    fn facts() -> PodFacts {
        PodFacts {
            name: "kv-0".into(),
            namespace: "ns1".into(),
            uid: "u-1".into(),
            node_name: "sandbox".into(),
            service_account: "default".into(),
            pod_ip: "10.244.0.7".into(),
            host_ip: "10.244.0.1".into(),
            labels: [("app".to_owned(), "kv".to_owned())].into(),
            annotations: BTreeMap::new(),
        }
    }

    fn allocatable() -> Allocatable {
        Allocatable {
            cpu: "8".into(),
            memory: "16Gi".into(),
        }
    }

    fn env_var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn from_field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn env_resolves_sources_in_kubelet_order() {
        let mut sources = Sources::default();
        sources.config_maps.insert(
            "cfg".into(),
            Some(ConfigMap {
                data: Some(
                    [
                        ("MODE".to_owned(), "fast".to_owned()),
                        ("bad key".to_owned(), "x".to_owned()),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
        );
        sources.secrets.insert(
            "creds".into(),
            Some(Secret {
                data: Some([("password".to_owned(), k8s_openapi::ByteString(b"hunter2".to_vec()))].into()),
                ..Default::default()
            }),
        );
        let container = Container {
            name: "c".into(),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                prefix: Some("CFG_".into()),
                secret_ref: None,
            }]),
            env: Some(vec![
                from_field("POD_NAME", "metadata.name"),
                from_field("POD_IP", "status.podIP"),
                from_field("APP", "metadata.labels['app']"),
                env_var("ADDR", "$(POD_IP):6379/$(CFG_MODE)/$(LATER)"),
                EnvVar {
                    name: "PASSWORD".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "creds".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "OPTIONAL".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "absent".into(),
                            key: "k".into(),
                            optional: Some(true),
                        }),
                        ..Default::default()
                    }),
                },
                env_var("LATER", "l"),
                env_var("POD_NAME", "override-$(POD_NAME)"),
            ]),
            ..Default::default()
        };
        let env = resolve(
            &container,
            &facts(),
            &sources,
            &allocatable(),
            &[("HOSTNAME".into(), "kv-0".into())],
        );
        let expected: Vec<(String, String)> = [
            ("HOSTNAME", "kv-0"),
            ("CFG_MODE", "fast"),
            ("POD_NAME", "override-kv-0"),
            ("POD_IP", "10.244.0.7"),
            ("APP", "kv"),
            ("ADDR", "10.244.0.7:6379/fast/$(LATER)"),
            ("PASSWORD", "hunter2"),
            ("LATER", "l"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let env = env.unwrap();
        assert_eq!(env, expected);
        let args = expand_all(&["--ip=$(POD_IP)".to_owned(), "$(NOPE)".to_owned()], &env);
        assert_eq!(args, vec!["--ip=10.244.0.7".to_owned(), "$(NOPE)".to_owned()]);
    }

    #[test]
    fn missing_required_sources_are_errors() {
        let container = Container {
            name: "c".into(),
            env: Some(vec![EnvVar {
                name: "X".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "nope".into(),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            }]),
            ..Default::default()
        };
        let env = resolve(&container, &facts(), &Sources::default(), &allocatable(), &[]);
        assert_eq!(env, Err(Error::SecretMissing("nope".into())));
        let bad_field = Container {
            env: Some(vec![from_field("X", "spec.nope")]),
            ..Default::default()
        };
        let env = resolve(&bad_field, &facts(), &Sources::default(), &allocatable(), &[]);
        assert_eq!(env, Err(Error::FieldPath("spec.nope".into())));
    }

    #[test]
    fn resource_fields_divide_and_round_up() {
        let container = Container {
            resources: Some(ResourceRequirements {
                limits: Some([("memory".to_owned(), Quantity("1Gi".into()))].into()),
                requests: Some([("cpu".to_owned(), Quantity("250m".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let field = |resource: &str, divisor: Option<&str>| ResourceFieldSelector {
            resource: resource.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
            container_name: None,
        };
        let value = |f: ResourceFieldSelector| resource_value(&f, Some(&container), &allocatable());
        assert_eq!(value(field("limits.memory", Some("1Mi"))), Ok("1024".into()));
        assert_eq!(value(field("requests.cpu", None)), Ok("1".into()));
        assert_eq!(value(field("requests.cpu", Some("1m"))), Ok("250".into()));
        assert_eq!(value(field("limits.cpu", None)), Ok("8".into()));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("x"), None);
    }
}
