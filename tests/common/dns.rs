//! A DNS server for tests: UDP on `127.0.0.1:0`, answering A and AAAA queries from records the
//! test changes while it runs (addresses, SERVFAIL, or an empty answer), with TTL 0. Messages
//! are read and written with `hickory-proto`'s types, apart from the resolver's own code paths.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};

/// What a name answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// These A (IPv4) and AAAA (IPv6) records.
    Addresses(Vec<IpAddr>),
    /// SERVFAIL.
    ServFail,
    /// NOERROR with no record.
    Empty,
}

/// A running server; names it has no answer for are NXDOMAIN.
pub struct DnsServer {
    pub addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    queries: Arc<AtomicUsize>,
}

impl DnsServer {
    /// Starts the server on its own thread (it runs until the test process ends).
    pub fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
        let addr = socket.local_addr().expect("addr");
        let answers = Arc::new(Mutex::new(HashMap::new()));
        let queries = Arc::new(AtomicUsize::new(0));
        let (shared, counted) = (Arc::clone(&answers), Arc::clone(&queries));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((len, peer)) = socket.recv_from(&mut buf) {
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let answers = shared.lock().expect("answers").clone();
                let reply = respond(&query, &answers).to_vec().expect("encodable");
                let _ = socket.send_to(&reply, peer);
            }
        });
        Self {
            addr,
            answers,
            queries,
        }
    }

    /// From now on `name` answers `answer`.
    pub fn set(&self, name: &str, answer: Answer) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.answers.lock().expect("answers").insert(name, answer);
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// The answer to `query` from `answers`.
fn respond(query: &Message, answers: &HashMap<String, Answer>) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    for question in query.queries() {
        reply.add_query(question.clone());
        let name = question.name().to_ascii();
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match answers.get(&name) {
            None => {
                reply.set_response_code(ResponseCode::NXDomain);
            }
            Some(Answer::ServFail) => {
                reply.set_response_code(ResponseCode::ServFail);
            }
            Some(Answer::Empty) => {}
            Some(Answer::Addresses(ips)) => {
                for ip in ips {
                    let data = match (ip, question.query_type()) {
                        (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                        _ => continue,
                    };
                    reply.add_answer(Record::from_rdata(question.name().clone(), 0, data));
                }
            }
        }
    }
    reply
}
