//! Just enough of MQTT 3.1.1 (and 3.1) framing for the authorising front: split a byte stream
//! into packets, read the topic of a PUBLISH and the filters of a SUBSCRIBE, and decode/encode a
//! CONNECT (the front swaps the client's credentials for the internal account before handing the
//! packet to rumqttd). Everything else passes through as the bytes the client sent.
//!
//! Wire format (MQTT 3.1.1 §2): a fixed header byte (type in the high nibble, flags in the low),
//! the "remaining length" as a variable-length integer of 1..=4 bytes (7 bits each, high bit =
//! more), then `remaining length` bytes. Strings are a big-endian u16 length plus UTF-8 bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const SUBSCRIBE: u8 = 8;
pub const DISCONNECT: u8 = 14;

/// CONNACK return codes of MQTT 3.1.1 §3.2.2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnectReturn {
    Accepted = 0,
    UnacceptableProtocol = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    BadCredentials = 4,
    NotAuthorized = 5,
}

/// Why a byte stream is not MQTT we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("the remaining length is longer than 4 bytes")]
    BadLength,
    #[error("a packet of {0} bytes is larger than the broker's limit of {1} bytes")]
    TooLarge(usize, usize),
    #[error("the packet ended early")]
    Truncated,
    #[error("a string is not UTF-8")]
    NotUtf8,
    #[error("the first packet is not a CONNECT")]
    NotConnect,
    #[error("protocol `{0}` level {1} is not MQTT 3.1/3.1.1")]
    Protocol(String, u8),
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// One complete packet: its fixed-header byte and the whole frame (header included).
#[derive(Debug, Clone)]
pub struct Frame {
    pub header: u8,
    pub bytes: Bytes,
    /// Where the variable header starts inside `bytes`.
    body_at: usize,
}

impl Frame {
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }

    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_at..]
    }

    /// QoS of a PUBLISH (bits 2-1 of the header).
    pub fn qos(&self) -> u8 {
        (self.header >> 1) & 0b11
    }
}

/// Takes one complete packet off the front of `buf`, or `None` when more bytes are needed.
pub fn next_frame(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<Frame>, PacketError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let mut remaining: usize = 0;
    let mut shift = 0;
    let mut at = 1;
    loop {
        if at > 4 {
            return Err(PacketError::BadLength);
        }
        let Some(&byte) = buf.get(at) else { return Ok(None) };
        remaining |= usize::from(byte & 0x7f) << shift;
        shift += 7;
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let total = at + remaining;
    if total > max_bytes {
        return Err(PacketError::TooLarge(total, max_bytes));
    }
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let header = buf[0];
    Ok(Some(Frame { header, bytes: buf.split_to(total).freeze(), body_at: at }))
}

fn read_u16(body: &mut &[u8]) -> Result<u16, PacketError> {
    if body.len() < 2 {
        return Err(PacketError::Truncated);
    }
    Ok(body.get_u16())
}

fn read_bytes<'a>(body: &mut &'a [u8]) -> Result<&'a [u8], PacketError> {
    let len = usize::from(read_u16(body)?);
    if body.len() < len {
        return Err(PacketError::Truncated);
    }
    let (head, tail) = body.split_at(len);
    *body = tail;
    Ok(head)
}

fn read_str<'a>(body: &mut &'a [u8]) -> Result<&'a str, PacketError> {
    std::str::from_utf8(read_bytes(body)?).map_err(|_| PacketError::NotUtf8)
}

/// The topic of a PUBLISH.
pub fn publish_topic(frame: &Frame) -> Result<&str, PacketError> {
    let mut body = frame.body();
    read_str(&mut body)
}

/// A PUBLISH taken apart: its packet id (QoS 1 and 2 only) and its payload, which shares the
/// frame's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishParts {
    pub qos: u8,
    pub pkid: Option<u16>,
    pub payload: Bytes,
}

/// The packet id and payload of a PUBLISH (MQTT 3.1.1 §3.3: topic, packet id if QoS > 0, then
/// the payload up to the end of the frame).
pub fn publish_parts(frame: &Frame) -> Result<PublishParts, PacketError> {
    let mut body = frame.body();
    read_str(&mut body)?;
    let qos = frame.qos();
    if qos == 3 {
        return Err(PacketError::Malformed("a PUBLISH with QoS 3"));
    }
    let pkid = if qos > 0 {
        let pkid = read_u16(&mut body)?;
        if pkid == 0 {
            return Err(PacketError::Malformed("a PUBLISH with packet id 0"));
        }
        Some(pkid)
    } else {
        None
    };
    let at = frame.bytes.len() - body.len();
    Ok(PublishParts { qos, pkid, payload: frame.bytes.slice(at..) })
}

/// A PUBACK for `pkid`.
pub fn puback(pkid: u16) -> Bytes {
    let [high, low] = pkid.to_be_bytes();
    Bytes::copy_from_slice(&[PUBACK << 4, 0x02, high, low])
}

/// The filters of a SUBSCRIBE, each with its requested QoS.
pub type Filters<'a> = Vec<(&'a str, u8)>;

/// The packet id and the filters of a SUBSCRIBE.
pub fn subscribe_filters(frame: &Frame) -> Result<(u16, Filters<'_>), PacketError> {
    let mut body = frame.body();
    let pkid = read_u16(&mut body)?;
    let mut filters = Vec::new();
    while !body.is_empty() {
        let filter = read_str(&mut body)?;
        if body.is_empty() {
            return Err(PacketError::Truncated);
        }
        let qos = body.get_u8();
        filters.push((filter, qos));
    }
    if filters.is_empty() {
        return Err(PacketError::Malformed("a SUBSCRIBE without filters"));
    }
    Ok((pkid, filters))
}

/// A SUBACK refusing every filter (return code 0x80, MQTT 3.1.1 §3.9.3).
pub fn suback_refused(pkid: u16, count: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + count);
    out.put_u8(0x90);
    put_remaining(&mut out, 2 + count);
    out.put_u16(pkid);
    out.put_bytes(0x80, count);
    out.freeze()
}

/// A CONNACK with `code` (session present = 0).
pub fn connack(code: ConnectReturn) -> [u8; 4] {
    [0x20, 0x02, 0x00, code as u8]
}

/// A will: where and what the broker publishes if the client vanishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
}

/// A decoded CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol_name: String,
    pub level: u8,
    pub clean_session: bool,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
}

impl Connect {
    pub fn decode(frame: &Frame) -> Result<Self, PacketError> {
        if frame.kind() != CONNECT {
            return Err(PacketError::NotConnect);
        }
        let mut body = frame.body();
        let protocol_name = read_str(&mut body)?.to_owned();
        if body.len() < 4 {
            return Err(PacketError::Truncated);
        }
        let level = body.get_u8();
        match (protocol_name.as_str(), level) {
            ("MQTT", 4) | ("MQIsdp", 3) => {}
            _ => return Err(PacketError::Protocol(protocol_name, level)),
        }
        let flags = body.get_u8();
        if flags & 1 != 0 {
            return Err(PacketError::Malformed("the reserved CONNECT flag is set"));
        }
        let keep_alive = body.get_u16();
        let client_id = read_str(&mut body)?.to_owned();
        let will = if flags & 0b100 != 0 {
            let topic = read_str(&mut body)?.to_owned();
            let payload = Bytes::copy_from_slice(read_bytes(&mut body)?);
            Some(Will { topic, payload, qos: (flags >> 3) & 0b11, retain: flags & 0b10_0000 != 0 })
        } else {
            None
        };
        let username = if flags & 0x80 != 0 { Some(read_str(&mut body)?.to_owned()) } else { None };
        let password = if flags & 0x40 != 0 {
            Some(Bytes::copy_from_slice(read_bytes(&mut body)?))
        } else {
            None
        };
        Ok(Self {
            protocol_name,
            level,
            clean_session: flags & 0b10 != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::with_capacity(64);
        put_bytes(&mut body, self.protocol_name.as_bytes());
        body.put_u8(self.level);
        let mut flags = 0u8;
        if self.clean_session {
            flags |= 0b10;
        }
        if let Some(will) = &self.will {
            flags |= 0b100 | ((will.qos & 0b11) << 3);
            if will.retain {
                flags |= 0b10_0000;
            }
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        body.put_u8(flags);
        body.put_u16(self.keep_alive);
        put_bytes(&mut body, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            put_bytes(&mut body, will.topic.as_bytes());
            put_bytes(&mut body, &will.payload);
        }
        if let Some(username) = &self.username {
            put_bytes(&mut body, username.as_bytes());
        }
        if let Some(password) = &self.password {
            put_bytes(&mut body, password);
        }
        let mut out = BytesMut::with_capacity(body.len() + 5);
        out.put_u8(CONNECT << 4);
        put_remaining(&mut out, body.len());
        out.extend_from_slice(&body);
        out.freeze()
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    // Strings longer than u16 cannot come from a decoded packet; the cast is exact.
    out.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(&bytes[..bytes.len().min(usize::from(u16::MAX))]);
}

fn put_remaining(out: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect() -> Connect {
        Connect {
            protocol_name: "MQTT".into(),
            level: 4,
            clean_session: true,
            keep_alive: 30,
            client_id: "dev-1".into(),
            will: Some(Will {
                topic: "edgewatch/v1/devices/x/status".into(),
                payload: Bytes::from_static(b"{\"online\":false}"),
                qos: 1,
                retain: true,
            }),
            username: Some("dev-1".into()),
            password: Some(Bytes::from_static(b"secret")),
        }
    }

    #[test]
    fn connect_round_trips() {
        let original = connect();
        let mut buf = BytesMut::from(&original.encode()[..]);
        let frame = next_frame(&mut buf, 1 << 20).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(Connect::decode(&frame).unwrap(), original);
    }

    #[test]
    fn frames_wait_for_all_their_bytes() {
        let bytes = connect().encode();
        let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
        assert!(next_frame(&mut buf, 1 << 20).unwrap().is_none());
        buf.extend_from_slice(&bytes[bytes.len() - 1..]);
        buf.extend_from_slice(&[0xc0, 0x00]); // PINGREQ behind it
        assert_eq!(next_frame(&mut buf, 1 << 20).unwrap().unwrap().kind(), CONNECT);
        assert_eq!(next_frame(&mut buf, 1 << 20).unwrap().unwrap().kind(), 12);
    }

    #[test]
    fn oversized_and_overlong_lengths_are_refused() {
        let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0x7f][..]);
        assert!(matches!(next_frame(&mut buf, 1024), Err(PacketError::TooLarge(..))));
        let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert_eq!(next_frame(&mut buf, usize::MAX).unwrap_err(), PacketError::BadLength);
    }

    #[test]
    fn publish_and_subscribe_are_read() {
        let mut buf = BytesMut::from(&[0x32, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01][..]);
        let frame = next_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!((frame.kind(), frame.qos()), (PUBLISH, 1));
        assert_eq!(publish_topic(&frame).unwrap(), "a/b");

        let mut buf =
            BytesMut::from(&[0x82, 0x08, 0x00, 0x07, 0x00, 0x03, b'a', b'/', b'#', 0x01][..]);
        let frame = next_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(subscribe_filters(&frame).unwrap(), (7, vec![("a/#", 1)]));
        assert_eq!(&suback_refused(7, 1)[..], &[0x90, 0x03, 0x00, 0x07, 0x80]);
    }

    #[test]
    fn publish_parts_find_the_packet_id_and_payload() {
        // QoS 1, topic "a/b", packet id 0x0102, payload "hi".
        let mut buf =
            BytesMut::from(&[0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x02, b'h', b'i'][..]);
        let frame = next_frame(&mut buf, 1024).unwrap().unwrap();
        let parts = publish_parts(&frame).unwrap();
        assert_eq!((parts.qos, parts.pkid, &parts.payload[..]), (1, Some(0x0102), &b"hi"[..]));
        assert_eq!(&puback(0x0102)[..], &[0x40, 0x02, 0x01, 0x02]);
        // QoS 0 has no packet id: everything after the topic is payload.
        let mut buf = BytesMut::from(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'][..]);
        let frame = next_frame(&mut buf, 1024).unwrap().unwrap();
        let parts = publish_parts(&frame).unwrap();
        assert_eq!((parts.pkid, &parts.payload[..]), (None, &b"hi"[..]));
        // Packet id 0 and a missing packet id are malformed.
        let mut buf = BytesMut::from(&[0x32, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x00][..]);
        let frame = next_frame(&mut buf, 1024).unwrap().unwrap();
        assert!(publish_parts(&frame).is_err());
        let mut buf = BytesMut::from(&[0x32, 0x05, 0x00, 0x03, b'a', b'/', b'b'][..]);
        let frame = next_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(publish_parts(&frame).unwrap_err(), PacketError::Truncated);
    }

    #[test]
    fn truncated_and_foreign_connects_are_errors() {
        let mut buf = BytesMut::from(&[0x10, 0x02, 0x00, 0x04][..]);
        let frame = next_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(Connect::decode(&frame).unwrap_err(), PacketError::Truncated);
        let mut v5 = connect();
        v5.level = 5;
        let mut buf = BytesMut::from(&v5.encode()[..]);
        let frame = next_frame(&mut buf, 1024).unwrap().unwrap();
        assert!(matches!(Connect::decode(&frame), Err(PacketError::Protocol(_, 5))));
    }
}
