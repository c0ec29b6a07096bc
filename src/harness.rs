//! Driving klaxon's own processes from outside: `klaxon bench` and the
//! integration tests (`tests/common`) both start components on free local
//! ports and poll until they are ready, so both use these.

use std::time::Duration;

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Calls `ready` every `every` until it holds: `Ok(true)` once it does,
/// `Ok(false)` once `timeout` has passed without it. An error from `ready`
/// ends the wait at once.
pub async fn poll_until<E>(
    timeout: Duration,
    every: Duration,
    mut ready: impl AsyncFnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if ready().await? {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polls_until_ready_or_timed_out_and_stops_at_an_error() {
        let mut calls = 0;
        let ready = poll_until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            async || {
                calls += 1;
                Ok::<_, ()>(calls == 3)
            },
        )
        .await;
        assert_eq!((ready, calls), (Ok(true), 3));

        let never = poll_until(
            Duration::from_millis(20),
            Duration::from_millis(5),
            async || Ok::<_, ()>(false),
        )
        .await;
        assert_eq!(never, Ok(false));

        let failed = poll_until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            async || Err::<bool, _>("exited"),
        )
        .await;
        assert_eq!(failed, Err("exited"));
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().unwrap();
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
