//! The wire contract of edgewatch (API.md "Readings and batches", "MQTT topics", "Bus"), shared by
//! the agent, the broker, the simulator and the cloud services. No I/O lives here: only types
//! that can exist only when valid, their JSON forms, and parsers that return typed errors naming
//! the offending field — never a panic, whatever the input.

mod batch;
mod bus;
mod ids;
mod metric;
mod payload;
mod timestamp;
mod topic;

pub use batch::{Batch, BatchError, Problem, Reading, Seq, Tags, limits};
pub use bus::{
    DEVICE_EVENTS_QUEUE, DLX_EXCHANGE, DeviceRecord, DeviceStatus, EXCHANGE, Location,
    MONITORING_QUEUE, RoutingKey, RoutingKeyError, StatusEvent, telemetry_message_id,
};
pub use ids::{DeviceId, IdError, UserId};
pub use metric::{MetricName, NameError};
pub use payload::{ConfigMessage, PayloadError, SensorValue, StatusMessage};
pub use timestamp::{Timestamp, TimestampError};
pub use topic::{SENSORS_FILTER, TELEMETRY_FILTER, Topic, TopicError};
