//! Delivering a notification: Slack (incoming webhook), generic webhook
//! (JSON), SMS and phone calls through a Twilio-shaped REST API, and the
//! console. Each send is retried with backoff; the error that remains after
//! the last attempt is what the incident's timeline records.

use std::time::Duration;

use serde_json::json;

use super::{
    incident::{Incident, Notification, Purpose},
    links::AckLinks,
    oncall::ContactKind,
};
use crate::{
    config::{RetryConfig, SmtpConfig, SmtpTls, TwilioConfig},
    paging::limits::cut_chars,
};

/// Everything a send needs besides the notification.
#[derive(Debug, Clone)]
pub struct Channels {
    http: reqwest::Client,
    twilio: TwilioConfig,
    smtp: SmtpConfig,
    retry: RetryConfig,
    links: Option<AckLinks>,
}

impl Channels {
    pub fn new(
        twilio: TwilioConfig,
        smtp: SmtpConfig,
        retry: RetryConfig,
        links: Option<AckLinks>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // A receiver's redirect would re-post the page elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client builds");
        Self {
            http,
            twilio,
            smtp,
            retry,
            links,
        }
    }

    /// Sends `n`, retrying with backoff; `Err` says why the last try failed.
    pub async fn send(&self, incident: &Incident, n: &Notification) -> Result<(), String> {
        let mut delay = self.retry.backoff;
        let mut attempt = 1;
        loop {
            match self.send_once(incident, n).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= self.retry.attempts => {
                    return Err(format!("{e} (after {attempt} attempts)"));
                }
                Err(e) => {
                    tracing::warn!(incident = %incident.id, user = %n.user, contact = %n.contact, error = %e, attempt, "delivery failed; retrying");
                    metrics::counter!("klaxon_notify_delivery_retries_total", "channel" => n.kind.as_str()).increment(1);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                    attempt += 1;
                }
            }
        }
    }

    async fn send_once(&self, incident: &Incident, n: &Notification) -> Result<(), String> {
        let text = message(incident, n);
        match n.kind {
            ContactKind::Console => {
                tracing::warn!(incident = %incident.id, user = %n.user, "PAGE {text}");
                Ok(())
            }
            ContactKind::Webhook => {
                let body = json!({
                    "event": n.purpose.as_str(),
                    "user": n.user,
                    "message": text,
                    "ack_url": self.ack_url(incident),
                    "incident": webhook_incident(incident),
                });
                self.post_json(&n.address, &body).await
            }
            ContactKind::Slack => {
                // Summaries come from producers and tag values: escaped, a
                // `<!channel>` or `<http://evil|docs>` in one stays text.
                let mut line = format!(
                    "*{}* {}",
                    slack_escape(&incident.severity.as_str().to_uppercase()),
                    slack_escape(&text)
                );
                if let (Purpose::Page, Some(url)) = (n.purpose, self.ack_url(incident)) {
                    line.push_str(&format!("\n<{url}|Acknowledge>"));
                }
                // No unfurling: Slack would fetch the acknowledge link.
                let body = json!({ "text": line, "unfurl_links": false, "unfurl_media": false });
                self.post_json(&n.address, &body).await
            }
            ContactKind::Sms => {
                // Twilio refuses a body over 1600 characters, counted
                // as UTF-16 units.
                let mut body = text;
                let mut units = 0;
                let fit = body
                    .chars()
                    .take_while(|c| {
                        units += c.len_utf16();
                        units <= MAX_SMS_CHARS
                    })
                    .count();
                cut_chars(&mut body, fit);
                self.twilio("Messages.json", &[("To", &n.address), ("Body", &body)])
                    .await
            }
            ContactKind::Phone => {
                // Read aloud: a group's long list would not be listened to.
                let mut said = format!("klaxon. {text}");
                cut_chars(&mut said, MAX_SAID_CHARS);
                let twiml = format!("<Response><Say>{}</Say></Response>", xml_escape(&said));
                self.twilio("Calls.json", &[("To", &n.address), ("Twiml", &twiml)])
                    .await
            }
            ContactKind::Email => self.email(incident, n, &text).await,
        }
    }

    async fn email(&self, incident: &Incident, n: &Notification, text: &str) -> Result<(), String> {
        use lettre::{
            AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
            transport::smtp::{
                authentication::Credentials,
                client::{Certificate, Tls, TlsParametersBuilder},
            },
        };
        let smtp = &self.smtp;
        let Some(host) = &smtp.host else {
            return Err("notify.smtp.host is not set".to_owned());
        };
        let mut body = format!(
            "{text}\n\nseverity: {}\ndedup_key: {}\nopened: {}\n",
            incident.severity,
            incident.dedup_key,
            incident.opened_at.to_rfc3339()
        );
        if let (Purpose::Page, Some(url)) = (n.purpose, self.ack_url(incident)) {
            body.push_str(&format!("\nAcknowledge: {url}\n"));
        }
        let subject = match n.purpose {
            Purpose::Page => format!("[klaxon] [{}] {}", incident.severity, incident.summary),
            Purpose::Resolved => format!("[klaxon] RESOLVED: {}", incident.summary),
            Purpose::Update => format!("[klaxon] UPDATE: {}", incident.summary),
        };
        let message = Message::builder()
            .from(
                smtp.from
                    .parse()
                    .map_err(|e| format!("notify.smtp.from: {e}"))?,
            )
            .to(n
                .address
                .parse()
                .map_err(|e| format!("the contact address does not parse: {e}"))?)
            .subject(subject)
            .body(body)
            .map_err(|e| e.to_string())?;
        let tls = || -> Result<_, String> {
            let mut params = TlsParametersBuilder::new(host.clone());
            if let Some(ca) = &smtp.ca_file {
                let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
                let cert =
                    Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
                params = params.add_root_certificate(cert);
            }
            params.build_rustls().map_err(|e| e.to_string())
        };
        let plain = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host);
        // Submission ports by default: 587 with STARTTLS, 465 with TLS.
        let builder = match smtp.tls {
            SmtpTls::Starttls => plain.port(587).tls(Tls::Required(tls()?)),
            SmtpTls::Tls => plain.port(465).tls(Tls::Wrapper(tls()?)),
            SmtpTls::None => plain.port(25),
        };
        let mut builder = builder.timeout(Some(Duration::from_secs(10)));
        if let Some(port) = smtp.port {
            builder = builder.port(port);
        }
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.to_string()));
        }
        builder
            .build()
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn ack_url(&self, incident: &Incident) -> Option<String> {
        self.links.as_ref().map(|l| l.url(&incident.id))
    }

    async fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<(), String> {
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| request_error(url, e))?;
        check(response).await
    }

    /// A POST to `{base_url}/2010-04-01/Accounts/{sid}/{resource}`, form
    /// encoded with basic auth, as Twilio's REST API takes it.
    async fn twilio(&self, resource: &str, fields: &[(&str, &str)]) -> Result<(), String> {
        let t = &self.twilio;
        let (Some(sid), Some(from)) = (&t.account_sid, &t.from) else {
            return Err("notify.twilio.account_sid and notify.twilio.from are not set".to_owned());
        };
        let url = format!(
            "{}/2010-04-01/Accounts/{sid}/{resource}",
            t.base_url.trim_end_matches('/')
        );
        let mut form: Vec<(&str, &str)> = vec![("From", from.as_str())];
        form.extend_from_slice(fields);
        let response = self
            .http
            .post(&url)
            .basic_auth(sid, t.auth_token.as_deref())
            .form(&form)
            .send()
            .await
            .map_err(|e| request_error(&url, e))?;
        check(response).await
    }
}

async fn check(response: reqwest::Response) -> Result<(), String> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(format!(
        "HTTP {status}: {}",
        body.chars().take(200).collect::<String>()
    ))
}

/// A failed request, as the timeline and the log say it: the URL's scheme
/// and host only. Webhook and Slack URLs are credentials (whoever holds one
/// can post) and Twilio's names the account; reqwest's own message carries
/// the whole URL.
fn request_error(url: &str, e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = format!("request to {} failed: {e}", url_origin(url));
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// `scheme://host[:port]` of `url`, without user, path or query.
fn url_origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or(""))
        }
        Err(_) => "an unparsable URL".to_owned(),
    }
}

/// What a webhook receiver learns of an incident: not its notifications,
/// whose addresses (Slack URLs, phone numbers, mail) belong to other users,
/// and a timeline with any address taken out.
fn webhook_incident(incident: &Incident) -> serde_json::Value {
    let addresses: Vec<&str> = incident
        .notifications
        .iter()
        .map(|n| n.address.as_str())
        .filter(|a| !a.is_empty())
        .collect();
    let timeline: Vec<serde_json::Value> = incident
        .timeline
        .iter()
        .map(|entry| {
            let detail = addresses
                .iter()
                .fold(entry.detail.clone(), |d, a| d.replace(a, "<address>"));
            json!({ "at": entry.at, "kind": entry.kind, "detail": detail })
        })
        .collect();
    json!({
        "id": incident.id,
        "dedup_key": incident.dedup_key,
        "status": incident.status,
        "summary": incident.summary,
        "severity": incident.severity,
        "source": incident.source,
        "policy": incident.policy,
        "opened_at": incident.opened_at,
        "acknowledged_by": incident.acknowledged_by,
        "resolved_by": incident.resolved_by,
        "timeline": timeline,
    })
}

/// Slack's mrkdwn control characters, escaped as Slack documents: text
/// from producers must not mention `<!channel>` or show a disguised link.
fn slack_escape(s: &str) -> String {
    // The same three characters as XML text.
    xml_escape(s)
}

/// An SMS body's length, at most: Twilio's limit.
const MAX_SMS_CHARS: usize = 1600;
/// What a call reads aloud, at most.
const MAX_SAID_CHARS: usize = 600;

/// The text every channel carries: one line, and its note (the alerts of
/// its group, what changed in it) on the next.
fn message(incident: &Incident, n: &Notification) -> String {
    let line = match n.purpose {
        Purpose::Page => format!(
            "[{}] {} (incident {})",
            incident.severity, incident.summary, incident.id
        ),
        Purpose::Resolved => format!("RESOLVED: {} (incident {})", incident.summary, incident.id),
        Purpose::Update => format!("UPDATE: {} (incident {})", incident.summary, incident.id),
    };
    match incident.note(n) {
        Some(note) => format!("{line}\n{note}"),
        None => line,
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
