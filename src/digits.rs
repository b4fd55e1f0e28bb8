//! Numbers and addresses written straight into text on the request path, without the
//! formatting machinery (which costs several times more): decimal, lowercase hex, IP addresses.
//! Used for forwarding headers, RateLimit values, trace ids and the JSON access record.

use std::net::IpAddr;

/// Appends `ip` as `Display` writes it; IPv4 digit by digit.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // A digit: `n % 10` is below 10.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

/// `bytes` as lowercase hex digits into `out`, which is twice as long.
pub fn lower_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses and numbers come out as `Display` writes them.
    #[test]
    fn addresses_and_numbers_are_written_as_display_does() {
        for ip in [
            "0.0.0.0",
            "10.200.3.45",
            "255.255.255.255",
            "2001:db8::1",
            "::1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
        for n in [0, 7, 10, 99, 100, 1_234_567, u64::MAX] {
            let mut out = String::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    /// Two digits a byte, high half first.
    #[test]
    fn hex_is_lowercase_and_padded() {
        let mut out = [0u8; 6];
        lower_hex(&[0x0a, 0xf7, 0x00], &mut out);
        assert_eq!(&out, b"0af700");
    }
}
