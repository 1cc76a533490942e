//! `volume ls` and `volume prune` filters with Docker's keys and meaning:
//! values of one key are alternatives, different keys must all match,
//! every label filter must match.

use std::collections::BTreeMap;

use crate::error::EngineError;

/// `label=KEY`, `label=KEY=VALUE`, or their negation `label!=…` (prune).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    /// The label's key.
    pub key: String,
    /// The value it must have; `None`: any value.
    pub value: Option<String>,
    /// `label!=`: the volume must not have the label (with that value).
    pub negated: bool,
}

impl LabelFilter {
    /// Parses the part after `label=` (`KEY` or `KEY=VALUE`).
    pub fn parse(expr: &str, negated: bool) -> Self {
        match expr.split_once('=') {
            Some((key, value)) => Self {
                key: key.to_owned(),
                value: Some(value.to_owned()),
                negated,
            },
            None => Self {
                key: expr.to_owned(),
                value: None,
                negated,
            },
        }
    }

    /// Whether `labels` pass the filter.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let has = match (&self.value, labels.get(&self.key)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some(got)) => want == got,
        };
        has != self.negated
    }
}

/// What `volume ls --filter` selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeFilters {
    /// `name=`: the name contains one of these.
    pub names: Vec<String>,
    /// `driver=`: the driver is one of these.
    pub drivers: Vec<String>,
    /// `label=`: every one matches.
    pub labels: Vec<LabelFilter>,
    /// `dangling=`: whether no container uses the volume.
    pub dangling: Option<bool>,
}

impl VolumeFilters {
    /// Parses `KEY=VALUE` filters: `name`, `driver`, `label`, `dangling`.
    ///
    /// # Errors
    ///
    /// [`EngineError::InvalidVolumeFilter`] for an unknown key, a missing
    /// `=`, or a `dangling` value other than `true`/`false`/`1`/`0`, or two
    /// different `dangling` values.
    pub fn parse(filters: &[String]) -> Result<Self, EngineError> {
        let mut out = Self::default();
        for filter in filters {
            let bad = |reason| EngineError::InvalidVolumeFilter {
                filter: filter.clone(),
                reason,
            };
            let (key, value) = filter
                .split_once('=')
                .ok_or_else(|| bad("expected KEY=VALUE"))?;
            match key {
                "name" => out.names.push(value.to_owned()),
                "driver" => out.drivers.push(value.to_owned()),
                "label" => out.labels.push(LabelFilter::parse(value, false)),
                "dangling" => {
                    let dangling = match value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad("dangling takes true or false")),
                    };
                    if out.dangling.is_some_and(|d| d != dangling) {
                        return Err(bad("dangling given both true and false"));
                    }
                    out.dangling = Some(dangling);
                }
                _ => return Err(bad("volume filters are name, driver, label and dangling")),
            }
        }
        Ok(out)
    }

    /// Whether a volume passes.
    pub(crate) fn matches(
        &self,
        name: &str,
        driver: &str,
        labels: &BTreeMap<String, String>,
        in_use: bool,
    ) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| name.contains(n.as_str())))
            && (self.drivers.is_empty() || self.drivers.iter().any(|d| d == driver))
            && self.labels.iter().all(|l| l.matches(labels))
            && self.dangling.is_none_or(|d| d != in_use)
    }
}

/// Parses `volume prune --filter` values: only `label=` and `label!=`.
///
/// # Errors
///
/// [`EngineError::InvalidVolumeFilter`] for any other filter.
pub fn prune_filters(filters: &[String]) -> Result<Vec<LabelFilter>, EngineError> {
    filters
        .iter()
        .map(|filter| match filter.split_once('=') {
            Some(("label", value)) => Ok(LabelFilter::parse(value, false)),
            Some(("label!", value)) => Ok(LabelFilter::parse(value, true)),
            _ => Err(EngineError::InvalidVolumeFilter {
                filter: filter.clone(),
                reason: "volume prune takes label=KEY[=VALUE] and label!=KEY[=VALUE]",
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(filters: &[&str]) -> Result<VolumeFilters, EngineError> {
        VolumeFilters::parse(&filters.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn label_filters_match_key_or_key_and_value_and_negate() {
        let l = labels(&[("env", "prod"), ("team", "")]);
        assert!(LabelFilter::parse("env", false).matches(&l));
        assert!(LabelFilter::parse("env=prod", false).matches(&l));
        assert!(!LabelFilter::parse("env=dev", false).matches(&l));
        assert!(LabelFilter::parse("team=", false).matches(&l));
        assert!(!LabelFilter::parse("other", false).matches(&l));
        assert!(LabelFilter::parse("env=dev", true).matches(&l));
        assert!(!LabelFilter::parse("env", true).matches(&l));
        assert!(LabelFilter::parse("other", true).matches(&l));
    }

    #[test]
    fn filters_combine_like_dockers() {
        let l = labels(&[("env", "prod")]);
        let f = parse(&["name=web", "name=db", "label=env=prod", "dangling=true"]).unwrap();
        assert!(f.matches("my-web-data", "local", &l, false));
        assert!(f.matches("db1", "local", &l, false));
        assert!(!f.matches("cache", "local", &l, false));
        assert!(!f.matches("db1", "local", &l, true));
        assert!(!f.matches("db1", "local", &BTreeMap::new(), false));
        let f = parse(&["driver=local", "dangling=0"]).unwrap();
        assert!(f.matches("x1", "local", &l, true));
        assert!(!f.matches("x1", "local", &l, false));
        assert!(!parse(&["driver=nfs"])
            .unwrap()
            .matches("x1", "local", &l, false));
        assert!(VolumeFilters::default().matches("x1", "local", &l, true));
    }

    #[test]
    fn bad_filters_are_invalid_arguments() {
        for bad in ["until=1h", "name", "dangling=maybe"] {
            let err = parse(&[bad]).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
        }
        assert_eq!(
            parse(&["dangling=true", "dangling=false"])
                .unwrap_err()
                .to_string(),
            "invalid volume filter \"dangling=false\": dangling given both true and false"
        );
        assert_eq!(
            parse(&["until=1h"]).unwrap_err().to_string(),
            "invalid volume filter \"until=1h\": volume filters are name, driver, label and dangling"
        );
    }

    #[test]
    fn prune_takes_only_label_filters() {
        let f = prune_filters(&["label=a=b".into(), "label!=c".into()]).unwrap();
        assert_eq!(
            f,
            vec![
                LabelFilter::parse("a=b", false),
                LabelFilter::parse("c", true)
            ]
        );
        assert!(prune_filters(&["name=x".into()]).is_err());
    }
}
