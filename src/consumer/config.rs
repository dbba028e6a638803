//! Client settings: pass-through properties first (so they can tune
//! anything), then what driftline must control.
//!
//! Guarantees: `bootstrap.servers`, `group.id`, `enable.auto.commit` and
//! `enable.auto.offset.store` always have driftline's values (the config
//! refuses them as pass-through keys, [`MANAGED_PROPERTIES`]); defaults
//! driftline prefers are set only where the pass-through leaves them unset.
//!
//! [`MANAGED_PROPERTIES`]: crate::config::MANAGED_PROPERTIES

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

use crate::config::{librdkafka_property, Config, PropertyValue};

/// Settings of one client: `kafka.client`, then `specific` (`kafka.consumer`
/// or `kafka.producer`), then the brokers.
pub fn client_config(config: &Config, specific: &BTreeMap<String, PropertyValue>) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (key, value) in config.kafka.client.iter().chain(specific) {
        c.set(librdkafka_property(key), value.to_string());
    }
    c.set("bootstrap.servers", &config.kafka.brokers);
    c
}

fn set_default(c: &mut ClientConfig, key: &str, value: &str) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

/// The scoring loop's consumer: a member of `kafka.group_id`.
pub fn group_config(config: &Config) -> ClientConfig {
    let mut c = client_config(config, &config.kafka.consumer);
    c.set("group.id", &config.kafka.group_id);
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    // A new group starts at the beginning: nothing already on the topic is skipped.
    set_default(&mut c, "auto.offset.reset", "earliest");
    set_default(&mut c, "statistics.interval.ms", "5000");
    c
}

/// The producer of predictions, DLQ records, changelog and drift outputs.
pub fn producer_config(config: &Config) -> ClientConfig {
    client_config(config, &config.kafka.producer)
}

/// A consumer that only reads assigned partitions (no group membership).
pub fn reader_config(config: &Config) -> ClientConfig {
    let mut c = client_config(config, &config.kafka.consumer);
    c.set("group.id", format!("{}-reader", config.kafka.group_id));
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("enable.partition.eof", "true");
    c.set("auto.offset.reset", "earliest");
    // Readers wait on the end of a partition (restore, catch-up, live
    // updates): answer within 50 ms rather than librdkafka's 500.
    set_default(&mut c, "fetch.wait.max.ms", "50");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driftline_controls_what_delivery_depends_on_and_defaults_the_rest() {
        let mut config = Config::default();
        config.kafka.brokers = "b:9092".into();
        config.kafka.group_id = "g".into();
        config.kafka.client.insert(
            "security_protocol".into(),
            PropertyValue::Text("SASL_SSL".into()),
        );
        config
            .kafka
            .consumer
            .insert("fetch.wait.max.ms".into(), PropertyValue::Integer(10));
        config
            .kafka
            .producer
            .insert("linger.ms".into(), PropertyValue::Integer(3));
        let group = group_config(&config);
        assert_eq!(group.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(group.get("group.id"), Some("g"));
        assert_eq!(group.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(group.get("enable.auto.commit"), Some("false"));
        assert_eq!(group.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(group.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(
            group.get("linger.ms"),
            None,
            "producer settings stay with the producer"
        );
        let reader = reader_config(&config);
        assert_eq!(reader.get("group.id"), Some("g-reader"));
        assert_eq!(reader.get("enable.partition.eof"), Some("true"));
        assert_eq!(
            reader.get("fetch.wait.max.ms"),
            Some("10"),
            "set by the config"
        );
        let producer = producer_config(&config);
        assert_eq!(producer.get("linger.ms"), Some("3"));
        assert_eq!(producer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(producer.get("group.id"), None);
    }
}
