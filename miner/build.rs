// The git revision for `--version`: see build-support/git_revision.rs.
include!("../build-support/git_revision.rs");
