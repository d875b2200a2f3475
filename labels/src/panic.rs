//! A panic hook that never prints the panic message (issue 22, R-OPS-3).
//!
//! The standard hook prints the message, and messages of panics in code that handles traffic
//! quote it: slicing a string at a bad index prints the string ("byte index 5 is not a char
//! boundary; it is inside 'é' … of `<the value>`"), `expect` on a parse result prints the
//! parser's error, which may echo its input. The sensor and the analyzer hold the values
//! this product exists to protect, so their binaries install this hook: it prints where the
//! panic happened and on which thread, to standard error, and withholds the message.

use std::panic::PanicHookInfo;

/// Replaces the process's panic hook with one that prints the location and thread only.
pub fn install_redacting_panic_hook() {
    std::panic::set_hook(Box::new(|info| eprintln!("{}", redacted(info))));
}

fn redacted(info: &PanicHookInfo<'_>) -> String {
    let location = info
        .location()
        .map_or_else(|| "unknown location".to_owned(), |l| l.to_string());
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("unnamed");
    format!(
        "panic on thread '{name}' at {location} (message withheld: it may quote traffic; \
         R-OPS-3)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_message_is_withheld_and_the_location_kept() {
        let seen = Arc::new(Mutex::new(String::new()));
        let out = Arc::clone(&seen);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            *out.lock().unwrap() = redacted(info);
        }));
        let secret = "6222020200112233445";
        let result = std::panic::catch_unwind(|| {
            let s = format!("é{secret}");
            // A char-boundary panic quotes the whole string in its message.
            let _ = &s[1..];
        });
        std::panic::set_hook(previous);
        assert!(result.is_err());
        let line = seen.lock().unwrap().clone();
        assert!(line.contains("panic.rs:"), "{line}");
        assert!(!line.contains(secret), "{line}");
        assert!(line.contains("message withheld"), "{line}");
    }
}
