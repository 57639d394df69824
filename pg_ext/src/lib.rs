//! The `lms_etl` PostgreSQL extension: parses `passback_params` (a Python-repr dict),
//! ingests chunks of raw API records and builds daily aggregates, all callable from SQL.

mod aggregate;
mod composite;
mod drop_guard;
mod health;
mod ingest;
mod learner_day;
mod partitions;
mod passback;
mod problem_day;
mod sourcedid;
mod zones;

::pgrx::pg_module_magic!(name, version);

// Tables and types first: the Rust functions' signatures refer to them.
pgrx::extension_sql_file!("../../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!(
    "../../sql/settings.sql",
    name = "settings",
    requires = ["schema"]
);
pgrx::extension_sql_file!(
    "../../sql/learner_day.sql",
    name = "learner_day",
    requires = [
        "settings",
        learner_day::learner_day_accum,
        learner_day::learner_day_final,
        learner_day::learner_day_combine,
        learner_day::learner_day_serialize,
        learner_day::learner_day_deserialize,
        problem_day::problem_day_accum,
        problem_day::problem_day_final
    ]
);
pgrx::extension_sql_file!(
    "../../sql/aggregate.sql",
    name = "aggregate",
    requires = ["learner_day"]
);
pgrx::extension_sql_file!(
    "../../sql/health.sql",
    name = "health",
    requires = ["aggregate"]
);
pgrx::extension_sql_file!(
    "../../sql/ingest.sql",
    name = "ingest_sql",
    requires = ["aggregate"]
);
pgrx::extension_sql_file!(
    "../../sql/partitions.sql",
    name = "partitions",
    requires = ["ingest_sql"]
);
pgrx::extension_sql_file!(
    "../../sql/citus.sql",
    name = "citus",
    requires = ["partitions"]
);
pgrx::extension_sql_file!("../../sql/roles.sql", name = "roles", requires = ["citus"]);
pgrx::extension_sql_file!(
    "../../sql/drop_guard.sql",
    name = "drop_guard",
    requires = ["roles", drop_guard::guard_drop_extension]
);
pgrx::extension_sql_file!(
    "../../sql/pyrepr_jsonb.sql",
    name = "pyrepr_jsonb",
    requires = [passback::pyrepr_to_json_text]
);

/// Runs `cargo pgrx test`'s one-off set-up and tells it how to configure its cluster.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // pg_cron runs the schedule of sql/pg_cron.sql for real in aggregate::tests.
        vec![
            "shared_preload_libraries = 'pg_cron'",
            "cron.database_name = 'pgrx_tests'",
            "cron.use_background_workers = on",
            "max_worker_processes = 16",
        ]
    }
}
