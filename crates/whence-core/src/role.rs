//! The three model roles.

use serde::Serialize;

/// Which model a scorer plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// M_T, the model distilled from.
    Teacher,
    /// M_S, the original student before distillation.
    Student,
    /// M_D, the student after distillation.
    Distilled,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Teacher, Role::Student, Role::Distilled];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Teacher => "teacher",
            Role::Student => "student",
            Role::Distilled => "distilled",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
