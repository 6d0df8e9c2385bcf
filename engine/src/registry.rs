//! The entity registry: which entity types an app syncs, and each type's settings.
//!
//! Entity names become operation names (`syncPushSpace`, `syncPullSpace`), so they are
//! restricted to ASCII letters and digits, starting with a letter. The registry is plain
//! configuration: it holds no state and touches no storage.

use crate::error::ConfigError;
use std::collections::BTreeMap;

pub const PUSH_BATCH_MAX_DEFAULT: usize = 100;
pub const PULL_PAGE_LIMIT_DEFAULT: usize = 1000;

/// Settings of one entity type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityConfig {
    name: String,
    /// Most ops in one push request.
    pub push_batch_max: usize,
    /// `limit` asked for in each pull request.
    pub pull_page_limit: usize,
    /// Merge concurrent edits of *different* fields without asking the user (off by
    /// default; equal stamps that touch the same field still become a stored conflict).
    pub auto_merge_fields: bool,
    /// Fields of the data that queries filter or order on (`priority`, `address.city`):
    /// each gets an index on (entity, space, field), made at open (see
    /// [`crate::query`]). Names follow the query's field-name rule.
    pub indexed_fields: Vec<String>,
}

/// An entity type's name: 1-64 ASCII letters and digits, starting with a letter (the
/// schema's CHECK on `entity` columns states the same rule).
pub(crate) fn is_valid_entity_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
}

impl EntityConfig {
    pub fn new(name: &str) -> Result<EntityConfig, ConfigError> {
        if !is_valid_entity_name(name) {
            return Err(ConfigError::InvalidEntityName(name.to_owned()));
        }
        Ok(EntityConfig {
            name: name.to_owned(),
            push_batch_max: PUSH_BATCH_MAX_DEFAULT,
            pull_page_limit: PULL_PAGE_LIMIT_DEFAULT,
            auto_merge_fields: false,
            indexed_fields: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn push_operation_name(&self) -> String {
        format!("syncPush{}", self.name)
    }

    pub fn pull_operation_name(&self) -> String {
        format!("syncPull{}", self.name)
    }
}

/// The app's entity types, in declaration order (pulls run in this order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntityRegistry {
    entities: Vec<EntityConfig>,
    index_by_name: BTreeMap<String, usize>,
}

impl EntityRegistry {
    pub fn new() -> EntityRegistry {
        EntityRegistry::default()
    }

    /// Registers a type; a name registered twice is an error.
    pub fn register(&mut self, config: EntityConfig) -> Result<&mut EntityRegistry, ConfigError> {
        if config.push_batch_max == 0 || config.pull_page_limit == 0 {
            return Err(ConfigError::ZeroBatchSize(config.name));
        }
        if let Some(field) = config
            .indexed_fields
            .iter()
            .find(|field| crate::query::validate_field_name(field).is_err())
        {
            return Err(ConfigError::InvalidIndexedField(field.clone()));
        }
        if self.index_by_name.contains_key(config.name()) {
            return Err(ConfigError::DuplicateEntity(config.name));
        }
        self.index_by_name
            .insert(config.name.clone(), self.entities.len());
        self.entities.push(config);
        Ok(self)
    }

    /// A registry of the given names with default settings.
    pub fn with_defaults(names: &[&str]) -> Result<EntityRegistry, ConfigError> {
        let mut registry = EntityRegistry::new();
        for name in names {
            registry.register(EntityConfig::new(name)?)?;
        }
        Ok(registry)
    }

    pub fn get(&self, name: &str) -> Option<&EntityConfig> {
        self.index_by_name
            .get(name)
            .map(|&index| &self.entities[index])
    }

    pub fn entities(&self) -> &[EntityConfig] {
        &self.entities
    }

    /// Finds the entity an operation name belongs to: `syncPushSpace` → (`Push`, Space).
    pub fn resolve_operation(
        &self,
        operation_name: &str,
    ) -> Option<(OperationKind, &EntityConfig)> {
        let (kind, entity) = if let Some(entity) = operation_name.strip_prefix("syncPush") {
            (OperationKind::Push, entity)
        } else {
            (
                OperationKind::Pull,
                operation_name.strip_prefix("syncPull")?,
            )
        };
        self.get(entity).map(|config| (kind, config))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    Push,
    Pull,
}

#[cfg(test)]
mod tests {
    //! Names are validated, duplicates refused, and operation names map back to types.
    use super::*;

    #[test]
    fn registry_validates_and_resolves() {
        let registry = EntityRegistry::with_defaults(&["Space", "Group"]).unwrap();
        assert_eq!(registry.get("Space").unwrap().push_batch_max, 100);
        assert_eq!(registry.get("Group").unwrap().pull_page_limit, 1000);
        assert_eq!(
            registry.resolve_operation("syncPullGroup").unwrap().0,
            OperationKind::Pull
        );
        assert!(registry.resolve_operation("syncPushNope").is_none());
        assert!(EntityRegistry::with_defaults(&["Space", "Space"]).is_err());
        for bad in ["", "1Space", "Sp ace", "Space_x"] {
            assert!(EntityConfig::new(bad).is_err(), "{bad:?}");
        }
    }
}
