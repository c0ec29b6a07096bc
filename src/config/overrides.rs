//! What flags and `KLAXON_*` variables set on top of the config file.
//! A command gathers them into one [`Overrides`]; [`Config::load_with`]
//! reads the file, applies them all with [`Config::apply`], and only then
//! runs the one [`Config::validate`], so a value is checked wherever it came
//! from.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use super::{Config, ConfigError, Secret, check_integration_key, short_secret};

/// `KLAXON_INTEGRATION_KEY_ALERTMANAGER=…` is `notify.integration_keys.alertmanager`.
const INTEGRATION_KEY_PREFIX: &str = "KLAXON_INTEGRATION_KEY_";

/// Each field replaces the config key its name says when it is set.
#[derive(Debug, Default)]
pub struct Overrides {
    /// `kafka.brokers`
    pub brokers: Option<String>,
    /// `lake.url`
    pub lake: Option<String>,
    /// `http.listen`
    pub http_listen: Option<String>,
    /// `rules.dir`
    pub rules_dir: Option<PathBuf>,
    /// `rules.paging_topic`
    pub rules_paging_topic: Option<String>,
    /// `rules.state_topic`
    pub rules_state_topic: Option<String>,
    /// `rules.idle_timeout`
    pub rules_idle_timeout: Option<Duration>,
    /// `rules.allowed_lateness`
    pub rules_allowed_lateness: Option<Duration>,
    /// `rules.reload_interval`
    pub rules_reload_interval: Option<Duration>,
    /// `notify.oncall`
    pub oncall: Option<PathBuf>,
    /// Credentials, which are better kept out of config files.
    pub secrets: EnvSecrets,
}

/// Credentials from `KLAXON_*` variables.
#[derive(Debug, Default)]
pub struct EnvSecrets {
    /// `notify.signing_key`, from `KLAXON_SIGNING_KEY`.
    pub signing_key: Option<Secret>,
    /// `notify.api_token`, from `KLAXON_API_TOKEN`.
    pub api_token: Option<Secret>,
    /// Added to (or replacing in) `notify.integration_keys`, from
    /// `KLAXON_INTEGRATION_KEY_<NAME>`.
    pub integration_keys: BTreeMap<String, Secret>,
    /// `notify.twilio.auth_token`, from `KLAXON_TWILIO_AUTH_TOKEN`.
    pub twilio_auth_token: Option<Secret>,
    /// `notify.smtp.password`, from `KLAXON_SMTP_PASSWORD`.
    pub smtp_password: Option<Secret>,
}

impl EnvSecrets {
    /// Reads the credential variables; an empty one counts as unset. A
    /// credential refused here is named by its variable, not its key.
    pub fn from_env() -> Result<Self, ConfigError> {
        let secret = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)
        };
        // klaxon's own credentials get the config file's length check.
        let own_secret = |name: &str| match secret(name) {
            Some(value) => match short_secret(name, &value) {
                Some(problem) => Err(ConfigError::Environment(problem)),
                None => Ok(Some(value)),
            },
            None => Ok(None),
        };
        let mut found = Self {
            signing_key: own_secret("KLAXON_SIGNING_KEY")?,
            api_token: own_secret("KLAXON_API_TOKEN")?,
            twilio_auth_token: secret("KLAXON_TWILIO_AUTH_TOKEN"),
            smtp_password: secret("KLAXON_SMTP_PASSWORD"),
            integration_keys: BTreeMap::new(),
        };
        // vars_os: `vars` panics on a variable that is not Unicode.
        for (var, key) in std::env::vars_os() {
            let (Some(var), Some(key)) = (var.to_str(), key.to_str()) else {
                continue;
            };
            let Some(name) = var.strip_prefix(INTEGRATION_KEY_PREFIX) else {
                continue;
            };
            if key.is_empty() {
                continue;
            }
            let name = name.to_lowercase();
            check_integration_key(&name, key)
                .map_err(|problem| ConfigError::Environment(format!("{var}: {problem}")))?;
            found.integration_keys.insert(name, Secret::new(key));
        }
        Ok(found)
    }
}

impl Config {
    /// The config file (or the defaults without one), every override
    /// applied, then validated once. Errors name the file.
    pub fn load_with(
        path: Option<&std::path::Path>,
        overrides: Overrides,
    ) -> Result<Self, ConfigError> {
        let display = path.map(|p| p.display().to_string());
        let mut config = match path {
            Some(path) => Self::read(path)?,
            None => Config::default(),
        };
        config.apply(overrides);
        config.validate(display.as_deref())?;
        Ok(config)
    }

    /// Applies every override that is set. Nothing is checked here: that is
    /// [`Config::validate`]'s job, after all of them.
    pub fn apply(&mut self, overrides: Overrides) {
        let Overrides {
            brokers,
            lake,
            http_listen,
            rules_dir,
            rules_paging_topic,
            rules_state_topic,
            rules_idle_timeout,
            rules_allowed_lateness,
            rules_reload_interval,
            oncall,
            secrets,
        } = overrides;
        fn set<T>(key: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *key = value;
            }
        }
        set(&mut self.kafka.brokers, brokers);
        set(&mut self.lake.url, lake);
        set(&mut self.http.listen, http_listen);
        self.given.rules_paging_topic |= rules_paging_topic.is_some();
        let rules = &mut self.rules;
        set(&mut rules.dir, rules_dir.map(Some));
        set(&mut rules.paging_topic, rules_paging_topic);
        set(&mut rules.state_topic, rules_state_topic);
        set(&mut rules.idle_timeout, rules_idle_timeout);
        set(&mut rules.allowed_lateness, rules_allowed_lateness);
        set(&mut rules.reload_interval, rules_reload_interval);
        let notify = &mut self.notify;
        set(&mut notify.oncall, oncall.map(Some));
        let EnvSecrets {
            signing_key,
            api_token,
            integration_keys,
            twilio_auth_token,
            smtp_password,
        } = secrets;
        set(&mut notify.signing_key, signing_key.map(Some));
        set(&mut notify.api_token, api_token.map(Some));
        notify.integration_keys.extend(integration_keys);
        set(&mut notify.twilio.auth_token, twilio_auth_token.map(Some));
        set(&mut notify.smtp.password, smtp_password.map(Some));
    }
}
