//! The rules of a directory (or one file), loaded and reloaded file by file.
//!
//! A file that changed and checks clean replaces its previous version. A file
//! with a problem is refused: its problems are reported once, and its previous
//! version (if any) stays active, so a typo saved in an editor never silences
//! alerts. A deleted file's rules go away.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::{
    check::{Problem, check_file, rule_files},
    evaluate::CompiledRule,
};

#[derive(Debug, Clone)]
struct LoadedFile {
    digest: [u8; 32],
    rules: Vec<CompiledRule>,
}

/// What a reload found.
#[derive(Debug, Default)]
pub struct Reload {
    /// Whether the active rules differ from before.
    pub changed: bool,
    /// Problems of files refused in this reload (each refused version is
    /// reported once).
    pub problems: Vec<Problem>,
}

/// The active rules, by file.
#[derive(Debug)]
pub struct RuleSet {
    path: PathBuf,
    files: BTreeMap<PathBuf, LoadedFile>,
    /// The digest of each file's refused version, so it is not reported again.
    refused: HashMap<PathBuf, [u8; 32]>,
}

impl RuleSet {
    /// Loads every rule under `path` (a `*.toml` directory or one file).
    /// Unlike a reload this is strict: any problem refuses the whole set, so
    /// a start with a broken rule never looks healthy. `Err` holds every
    /// problem found.
    pub async fn load(path: &Path) -> std::io::Result<Result<Self, Vec<Problem>>> {
        let mut set = Self {
            path: path.to_owned(),
            files: BTreeMap::new(),
            refused: HashMap::new(),
        };
        let reload = set.reload().await?;
        Ok(if reload.problems.is_empty() {
            Ok(set)
        } else {
            Err(reload.problems)
        })
    }

    /// Every active rule, in file order.
    pub fn rules(&self) -> Vec<CompiledRule> {
        self.files
            .values()
            .flat_map(|f| f.rules.iter().cloned())
            .collect()
    }

    /// Reads the files again; see the module docs.
    pub async fn reload(&mut self) -> std::io::Result<Reload> {
        let mut next = BTreeMap::new();
        let mut problems = Vec::new();
        let mut names: HashMap<String, PathBuf> = HashMap::new();
        for file in rule_files(&self.path)? {
            let previous = self.files.get(&file);
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => Some(text),
                Err(e) => {
                    // A file being replaced can vanish between listing and
                    // reading; keep what was there.
                    tracing::warn!(file = %file.display(), error = %e, "cannot read rule file");
                    None
                }
            };
            let digest: Option<[u8; 32]> =
                text.as_ref().map(|t| Sha256::digest(t.as_bytes()).into());
            let unchanged = digest.is_none()
                || previous.is_some_and(|p| Some(p.digest) == digest)
                || self.refused.get(&file).copied() == digest;
            let chosen = match (text, digest) {
                (Some(text), Some(digest)) if !unchanged => {
                    match compile_file(&file, &text, &names).await {
                        Ok(rules) => {
                            self.refused.remove(&file);
                            Some(LoadedFile { digest, rules })
                        }
                        Err(file_problems) => {
                            problems.extend(file_problems);
                            self.refused.insert(file.clone(), digest);
                            previous.cloned()
                        }
                    }
                }
                _ => previous.cloned(),
            };
            if let Some(loaded) = chosen {
                for r in &loaded.rules {
                    names.insert(r.rule.name.clone(), file.clone());
                }
                next.insert(file, loaded);
            }
        }
        let digests = |files: &BTreeMap<PathBuf, LoadedFile>| {
            files
                .iter()
                .map(|(p, f)| (p.clone(), f.digest))
                .collect::<Vec<_>>()
        };
        let changed = digests(&next) != digests(&self.files);
        self.files = next;
        Ok(Reload { changed, problems })
    }
}

/// Checks and compiles one file; `taken` are names other files already use.
async fn compile_file(
    file: &Path,
    text: &str,
    taken: &HashMap<String, PathBuf>,
) -> Result<Vec<CompiledRule>, Vec<Problem>> {
    let (rules, problems) = check_file(file, text, None).await;
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut compiled = Vec::with_capacity(rules.len());
    let mut problems = Vec::new();
    for (rule, line) in rules {
        let problem = |message: String| Problem {
            file: file.to_owned(),
            line,
            rule: Some(rule.name.clone()),
            message,
        };
        if let Some(other) = taken.get(&rule.name) {
            problems.push(problem(format!(
                "the name is already used in {}",
                other.display()
            )));
            continue;
        }
        match CompiledRule::compile(rule.clone()).await {
            Ok(c) => compiled.push(c),
            Err(message) => problems.push(problem(message)),
        }
    }
    if problems.is_empty() {
        Ok(compiled)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, sql: &str) -> String {
        format!(
            "[[rule]]\nname = \"{name}\"\nsql = \"{sql}\"\nwindow = \"1m\"\nseverity = \"warning\"\n"
        )
    }

    fn names(set: &RuleSet) -> Vec<String> {
        set.rules().into_iter().map(|r| r.rule.name).collect()
    }

    #[tokio::test]
    async fn a_broken_file_is_refused_once_and_its_previous_version_stays() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(&a, rule("a", "SELECT count(*) AS n FROM metrics")).unwrap();
        std::fs::write(&b, rule("b", "SELECT max(value) AS m FROM metrics")).unwrap();
        let mut set = RuleSet::load(dir.path()).await.unwrap().unwrap();
        assert_eq!(names(&set), ["a", "b"]);

        let reload = set.reload().await.unwrap();
        assert!(
            !reload.changed && reload.problems.is_empty(),
            "nothing changed"
        );

        // a.toml broken, b.toml changed: b's new version, a's old one.
        std::fs::write(&a, rule("a", "SELEC count(*) FROM metrics")).unwrap();
        std::fs::write(&b, rule("b", "SELECT min(value) AS m FROM metrics")).unwrap();
        let reload = set.reload().await.unwrap();
        assert!(reload.changed);
        assert_eq!(reload.problems.len(), 1, "{:?}", reload.problems);
        let problem = reload.problems[0].to_string();
        assert!(
            problem.starts_with(&format!("{}:3: rule \"a\": SQL", a.display())),
            "{problem}"
        );
        let sql: Vec<String> = set
            .rules()
            .iter()
            .map(|r| r.rule.sql.get_ref().clone())
            .collect();
        assert_eq!(
            sql,
            [
                "SELECT count(*) AS n FROM metrics",
                "SELECT min(value) AS m FROM metrics"
            ]
        );

        let reload = set.reload().await.unwrap();
        assert!(
            reload.problems.is_empty(),
            "a refused version is reported once"
        );

        // Fixed, and a new file taking a name in use is refused.
        std::fs::write(&a, rule("a", "SELECT sum(value) AS s FROM metrics")).unwrap();
        std::fs::write(dir.path().join("c.toml"), rule("b", "SELECT 1 AS one")).unwrap();
        let reload = set.reload().await.unwrap();
        assert!(reload.changed);
        assert_eq!(reload.problems.len(), 1);
        assert!(
            reload.problems[0].message.contains("already used"),
            "{}",
            reload.problems[0]
        );
        assert_eq!(
            set.rules()[0].rule.sql.get_ref(),
            "SELECT sum(value) AS s FROM metrics"
        );

        std::fs::remove_file(&b).unwrap();
        std::fs::remove_file(dir.path().join("c.toml")).unwrap();
        set.reload().await.unwrap();
        assert_eq!(names(&set), ["a"], "a deleted file's rules go away");
    }

    #[tokio::test]
    async fn the_first_load_refuses_any_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            rule("a", "SELECT count(*) AS n FROM metrics"),
        )
        .unwrap();
        std::fs::write(dir.path().join("b.toml"), "[[rule]]\nname = 1\n").unwrap();
        let problems = RuleSet::load(dir.path()).await.unwrap().unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].to_string().contains("b.toml:2"),
            "{}",
            problems[0]
        );
    }
}
