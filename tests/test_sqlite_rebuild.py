"""Views and triggers set aside while a SQLite table is rebuilt, and made again after."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, create_engine

from mirror.sqlite_rebuild import views_and_triggers_set_aside


def _schema(connection: Connection) -> list[tuple[str, str]]:
    rows = connection.exec_driver_sql(
        "SELECT type, name FROM sqlite_master WHERE type IN ('view', 'trigger') ORDER BY name"
    )
    return [(row[0], row[1]) for row in rows]


def test_a_rebuilt_table_keeps_its_triggers_and_the_views_on_it(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as connection:
        for statement in (
            "CREATE TABLE t (a INTEGER)",
            "CREATE TABLE log (a INTEGER)",
            "CREATE VIEW v AS SELECT a FROM t",
            "CREATE VIEW w AS SELECT a FROM v",
            "CREATE TRIGGER on_t AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.a); END",
            "CREATE TRIGGER on_w INSTEAD OF INSERT ON w "
            "BEGIN INSERT INTO t (a) VALUES (new.a); END",
        ):
            connection.exec_driver_sql(statement)
        before = _schema(connection)
        with views_and_triggers_set_aside(connection):
            assert _schema(connection) == []
            # The rebuild of Alembic's batch mode: copy, DROP, RENAME. With the views in
            # place, SQLite refuses the RENAME ("error in view v: no such table: main.t").
            connection.exec_driver_sql("CREATE TABLE _tmp_t (a INTEGER, b TEXT)")
            connection.exec_driver_sql("INSERT INTO _tmp_t (a) SELECT a FROM t")
            connection.exec_driver_sql("DROP TABLE t")
            connection.exec_driver_sql("ALTER TABLE _tmp_t RENAME TO t")
        assert _schema(connection) == before
        connection.exec_driver_sql("INSERT INTO w VALUES (7)")  # on_w, then on_t
        assert connection.exec_driver_sql("SELECT a FROM v").scalars().all() == [7]
        assert connection.exec_driver_sql("SELECT a FROM log").scalars().all() == [7]


def test_a_trigger_goes_with_a_dropped_table_and_a_name_made_meanwhile_stays(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (a INTEGER)")
        connection.exec_driver_sql("CREATE TABLE u (a INTEGER)")
        connection.exec_driver_sql("CREATE TRIGGER on_t AFTER INSERT ON t BEGIN SELECT 1; END")
        connection.exec_driver_sql("CREATE VIEW v AS SELECT a FROM t")
        with views_and_triggers_set_aside(connection):
            connection.exec_driver_sql("DROP TABLE t")  # a downgrade dropping a table
            connection.exec_driver_sql("CREATE VIEW v AS SELECT a FROM u")
        assert _schema(connection) == [("view", "v")]
        made = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'v'")
        assert "FROM u" in made.scalar_one()
