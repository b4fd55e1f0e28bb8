//! Early answers: a backend may answer a request whose body is still arriving (a 413 or 401 to
//! an upload's head). While a streamed body is being sent, the connection's read side is
//! watched; once a complete answer (head and whole body, as framed) is buffered, the upload
//! stops and the answer goes to the client at once. The connection is not reused after that
//! (the backend never got the whole request), and the client connection closes after the
//! answer (the rest of its body is never read).

use std::future::pending;

use actix_codec::Decoder;
use actix_http::h1::{ClientCodec, MessageType};
use actix_http::ServiceConfig;
use actix_web::http::{header, Method};
use actix_web::web::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::framing::has_body;

/// Reads from `io` into `read` (`chunk` bytes at a time) until `read` holds a complete answer
/// to a `method` request; never ends if the connection closes or fails first (the upload's
/// side finds that out).
pub async fn complete_answer<R: AsyncRead + Unpin>(
    io: &mut R,
    read: &mut BytesMut,
    chunk: usize,
    method: &Method,
    config: &ServiceConfig,
) {
    loop {
        if !read.is_empty() && is_complete(read, method, config) {
            return;
        }
        read.reserve(chunk);
        match io.read_buf(read).await {
            Ok(n) if n > 0 => {}
            _ => pending::<()>().await,
        }
    }
}

/// Whether `buffered` holds a whole final answer: its head (informational answers passed
/// over) and all of its body by its length or chunks. An answer whose body runs to the close
/// of the connection is never complete before it.
fn is_complete(buffered: &BytesMut, method: &Method, config: &ServiceConfig) -> bool {
    let mut probe = buffered.clone();
    let mut codec = ClientCodec::new(config.clone());
    let head = loop {
        match codec.decode(&mut probe) {
            Ok(Some(head)) if head.status.is_informational() => {}
            Ok(Some(head)) => break head,
            Ok(None) | Err(_) => return false,
        }
    };
    if !has_body(method, head.status) {
        return true;
    }
    let framed = head.headers.contains_key(header::CONTENT_LENGTH)
        || head.headers.contains_key(header::TRANSFER_ENCODING);
    if !framed {
        return false;
    }
    if codec.message_type() == MessageType::None {
        return true;
    }
    let mut payload = codec.into_payload_codec();
    loop {
        match payload.decode(&mut probe) {
            Ok(Some(Some(_))) => {}
            Ok(Some(None)) => return true,
            Ok(None) | Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(text: &str, method: Method) -> bool {
        let config = actix_http::ServiceConfigBuilder::new().build();
        is_complete(&BytesMut::from(text), &method, &config)
    }

    /// A head with all of its body is complete; part of it, a head alone, or a body that ends
    /// with the connection is not. (In a runtime: actix-http's configuration keeps a clock
    /// task.)
    #[actix_rt::test]
    async fn an_answer_is_complete_with_all_of_its_body() {
        let post = || Method::POST;
        let head = "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 5\r\n\r\n";
        assert!(complete(&format!("{head}large"), post()));
        assert!(!complete(&format!("{head}lar"), post()));
        assert!(!complete(
            "HTTP/1.1 413 Payload Too Large\r\ncontent-le",
            post()
        ));
        let chunked = "HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n3\r\nno!\r\n";
        assert!(!complete(chunked, post()));
        assert!(complete(&format!("{chunked}0\r\n\r\n"), post()));
        assert!(complete("HTTP/1.1 204 No Content\r\n\r\n", post()));
        assert!(complete(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n",
            post()
        ));
        assert!(!complete("HTTP/1.1 100 Continue\r\n\r\n", post()));
        assert!(!complete("HTTP/1.1 200 OK\r\n\r\nuntil close", post()));
    }
}
