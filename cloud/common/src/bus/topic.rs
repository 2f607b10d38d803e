//! AMQP topic-exchange matching, for the in-process bus: words are separated by `.`, `*` matches
//! exactly one word and `#` matches zero or more.

/// Whether `key` matches the binding `pattern`.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    matches(&pattern, &key)
}

fn matches(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| matches(rest, &key[skip..])),
        Some((word, rest)) => match key.split_first() {
            Some((first, key_rest)) => (*word == "*" || word == first) && matches(rest, key_rest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn follows_amqp_topic_rules() {
        let cases = [
            ("telemetry.*", "telemetry.abc", true),
            ("telemetry.*", "telemetry", false),
            ("telemetry.*", "telemetry.a.b", false),
            ("telemetry.#", "telemetry", true),
            ("telemetry.#", "telemetry.a.b", true),
            ("#", "anything.at.all", true),
            ("device.created", "device.created", true),
            ("device.created", "device.updated", false),
            ("*.status", "device.status", true),
            ("#.status", "a.b.status", true),
            ("a.#.z", "a.z", true),
            ("a.#.z", "a.b.c.z", true),
            ("a.#.z", "a.b.c", false),
        ];
        for (pattern, key, want) in cases {
            assert_eq!(topic_matches(pattern, key), want, "{pattern} ~ {key}");
        }
    }
}
