//! Every key the core writes (see `docs/design.md`, "Key layout"). Ids are
//! validated to contain no `/`, so a prefix never reaches into a neighbour.

/// Key builder for one deployment's namespace.
#[derive(Clone, Debug)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// Keys under `{namespace}/`.
    pub fn new(namespace: &str) -> Self {
        Keys {
            root: format!("{}/", namespace.trim_end_matches('/')),
        }
    }

    /// Prefix of every swarm record.
    pub fn swarms(&self) -> String {
        format!("{}swarms/", self.root)
    }

    /// One swarm's record.
    pub fn swarm(&self, swarm_id: &str) -> String {
        format!("{}swarms/{swarm_id}", self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_keys_sit_under_the_namespace() {
        let keys = Keys::new("prod/");
        assert_eq!(keys.swarm("a"), "prod/swarms/a");
        assert!(keys.swarm("a").starts_with(&keys.swarms()));
    }
}
