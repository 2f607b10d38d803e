//! Topic permissions: what an authenticated client may publish and subscribe to. rumqttd has no
//! ACL of its own, so the front checks every PUBLISH topic, SUBSCRIBE filter and will topic
//! against the client's [`Permissions`] before rumqttd sees them.
//!
//! A permission is an MQTT filter. A PUBLISH is allowed when its topic matches one of the
//! publish filters; a SUBSCRIBE filter is allowed only when every topic it could match is
//! matched by one of the subscribe filters (so a device allowed `edgewatch/v1/devices/A/#`
//! cannot subscribe `edgewatch/v1/devices/+/telemetry`, which would include B's).

use edgewatch_protocol::{DeviceId, Topic};

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An enrolled device: may touch only `edgewatch/v1/devices/{id}/`.
    Device(DeviceId),
    /// A static account from the configuration, with its own permissions.
    Account { username: String, permissions: Permissions },
}

impl Identity {
    pub fn permissions(&self) -> Permissions {
        match self {
            Self::Device(id) => Permissions::device(*id),
            Self::Account { permissions, .. } => permissions.clone(),
        }
    }

    /// The label used in logs and metrics: `device` or the account name.
    pub fn kind(&self) -> &str {
        match self {
            Self::Device(_) => "device",
            Self::Account { .. } => "account",
        }
    }
}

/// The filters a client may publish to and subscribe with.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Permissions {
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub subscribe: Vec<String>,
}

impl Permissions {
    /// A device's: everything under its own prefix, nothing else.
    pub fn device(id: DeviceId) -> Self {
        let own = format!("{}#", Topic::device_prefix(id));
        Self { publish: vec![own.clone()], subscribe: vec![own] }
    }

    /// Whether a PUBLISH to `topic` is allowed. Topics with wildcards are never valid.
    pub fn may_publish(&self, topic: &str) -> bool {
        valid_topic(topic) && self.publish.iter().any(|f| matches(f, topic))
    }

    /// Whether a SUBSCRIBE with `filter` is allowed; `$share/{group}/` is looked through.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        let filter = match filter.strip_prefix("$share/") {
            Some(rest) => match rest.split_once('/') {
                Some((group, inner)) if !group.is_empty() && !group.contains(['+', '#']) => inner,
                _ => return false,
            },
            None => filter,
        };
        valid_filter(filter) && self.subscribe.iter().any(|allowed| covers(allowed, filter))
    }
}

fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

/// MQTT matching of a topic against a filter (MQTT 3.1.1 §4.7), including the rule that
/// wildcards in the first level do not match topics starting with `$`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic matched by `filter` is matched by `allowed`.
fn covers(allowed: &str, filter: &str) -> bool {
    // A leading wildcard never matches `$` topics, so it cannot grant `$SYS/...`.
    if filter.starts_with('$') && allowed.starts_with(['+', '#']) {
        return false;
    }
    let mut a = allowed.split('/');
    let mut f = filter.split('/');
    loop {
        match (a.next(), f.next()) {
            (Some("#"), _) => return true,
            // `+` covers one level of anything but a multi-level wildcard.
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(x), Some(y)) if x == y && x != "+" && x != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DeviceId {
        DeviceId::parse(&format!("0193a5b0-0000-7000-8000-0000000000{n:02x}")).unwrap()
    }

    #[test]
    fn a_device_stays_under_its_prefix() {
        let (a, b) = (id(1), id(2));
        let p = Permissions::device(a);
        assert!(p.may_publish(&format!("edgewatch/v1/devices/{a}/telemetry")));
        assert!(!p.may_publish(&format!("edgewatch/v1/devices/{b}/telemetry")));
        assert!(!p.may_publish("sensors/x/temp"));
        assert!(!p.may_publish(&format!("edgewatch/v1/devices/{a}/+")));
        assert!(p.may_subscribe(&format!("edgewatch/v1/devices/{a}/config")));
        assert!(p.may_subscribe(&format!("edgewatch/v1/devices/{a}/#")));
        assert!(!p.may_subscribe("edgewatch/v1/devices/+/config"));
        assert!(!p.may_subscribe("edgewatch/v1/devices/#"));
        assert!(!p.may_subscribe("#"));
        assert!(!p.may_subscribe(&format!("edgewatch/v1/devices/{b}/config")));
        assert!(!p.may_subscribe(&format!("$share/g/edgewatch/v1/devices/{b}/config")));
        assert!(p.may_subscribe(&format!("$share/g/edgewatch/v1/devices/{a}/config")));
    }

    #[test]
    fn a_bridge_reads_all_telemetry_and_writes_configs() {
        let p = Permissions {
            publish: vec!["edgewatch/v1/devices/+/config".into()],
            subscribe: vec![
                "edgewatch/v1/devices/+/telemetry".into(),
                "edgewatch/v1/devices/+/status".into(),
            ],
        };
        assert!(p.may_subscribe("$share/devices/edgewatch/v1/devices/+/telemetry"));
        assert!(p.may_subscribe(&format!("edgewatch/v1/devices/{}/status", id(3))));
        assert!(!p.may_subscribe("edgewatch/v1/devices/#"));
        assert!(!p.may_subscribe("edgewatch/v1/devices/+/+"));
        assert!(p.may_publish(&format!("edgewatch/v1/devices/{}/config", id(3))));
        assert!(!p.may_publish(&format!("edgewatch/v1/devices/{}/telemetry", id(3))));
    }

    #[test]
    fn matching_follows_the_mqtt_rules() {
        assert!(matches("sensors/#", "sensors/a/temp"));
        assert!(matches("sensors/#", "sensors"));
        assert!(matches("sensors/+/temp", "sensors/a/temp"));
        assert!(!matches("sensors/+/temp", "sensors/a/b/temp"));
        assert!(!matches("#", "$SYS/uptime"));
        assert!(!matches("+/uptime", "$SYS/uptime"));
        assert!(matches("$SYS/#", "$SYS/uptime"));
    }

    #[test]
    fn malformed_filters_are_refused() {
        let p = Permissions { publish: vec![], subscribe: vec!["#".into()] };
        assert!(p.may_subscribe("a/+/b"));
        assert!(!p.may_subscribe("a/#/b"));
        assert!(!p.may_subscribe("a/b#"));
        assert!(!p.may_subscribe(""));
        assert!(!p.may_subscribe("$share//a"));
        assert!(!p.may_subscribe("$SYS/#"));
    }
}
