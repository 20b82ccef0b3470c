"""Entry point of the `leadbridge` command."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from cli.context import (
    RUN_CHILD_ENV,
    configure_logging,
    embedded_services,
    fail,
    keep_celery_off_logging,
    settings_or_exit,
)
from cli.doctor import doctor
from cli.sources_commands import sources
from cli.supervisor import Child, Supervisor, cli_argv, wait_until_ready
from tasks.config import QUEUES

log = logging.getLogger("cli.run")


class LazyGroup(click.Group):
    """A group whose heavier subcommands (training, simulator, admin) are imported only when invoked."""

    LAZY = {
        "train": "cli.scoring_commands:train",
        "score": "cli.scoring_commands:score",
        "simulate": "cli.simulate_commands:simulate_command",
        "sandbox": "cli.simulate_commands:sandbox",
        "crm": "cli.crm_commands:crm",
        "users": "cli.users_commands:users",
        "forget": "cli.privacy_commands:forget",
        "backfill": "cli.backfill_commands:backfill",
        "model": "cli.model_commands:model",
        "fields": "cli.fields_commands:fields",
        "value": "cli.value_commands:value",
        "bands": "cli.bands_commands:bands",
        "outcomes": "cli.bands_commands:outcomes",
        "rules": "cli.rules_commands:rules",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            import importlib

            module, attribute = self.LAZY[name].split(":")
            try:
                return getattr(importlib.import_module(module), attribute)
            except ModuleNotFoundError as exc:
                if exc.name == module:
                    return None  # that command is not part of this build
                raise
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """leadbridge: real-time predictive lead scoring for HubSpot and Salesforce."""
    if ctx.invoked_subcommand in ("sandbox", "simulate") and os.environ.get(RUN_CHILD_ENV) == "1":
        configure_logging(settings_or_exit())  # as parts of `run`, they log like the others


@cli.group()
def db() -> None:
    """Database schema migrations (and Redis key names)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (the same ones on SQLite and PostgreSQL), and rename old Redis keys."""
    settings = settings_or_exit()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with embedded_services(settings) as urls:
        prepare_stores(urls.database_url, urls.redis_url, revision)
    click.echo(f"database at {revision}")


def prepare_stores(database_url: str, redis_url: str, revision: str = "head") -> None:
    """Migrate the database to `revision` and give live Redis keys their current names (both idempotent)."""
    from core.keys import upgrade_key_names
    from core.runtime import redis_client
    from storage.migrate import upgrade

    try:
        upgrade(database_url, revision)
    except Exception as exc:  # report the database's own complaint, without a traceback
        fail(f"migration failed: {type(exc).__name__}: {exc}")
    try:
        # Before any process reads them: an admin session under its old name would log the admin out.
        upgrade_key_names(redis_client(redis_url))
    except Exception as exc:  # report Redis's complaint, without a traceback
        fail(f"renaming Redis keys failed: {type(exc).__name__}: {exc}")


@cli.command()
def run() -> None:
    """Run web, worker and beat together on this machine (embedded Redis and SQLite unless configured).

    With no CRM credentials it runs in sandbox mode: a sandbox CRM and the traffic simulator feed it.
    """
    settings = settings_or_exit()
    configure_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with embedded_services(settings) as urls:
        prepare_stores(urls.database_url, urls.redis_url)
        env = {**os.environ, **urls.as_env(), "LEADBRIDGE_DATA_DIR": str(settings.data_dir.resolve()),
               RUN_CHILD_ENV: "1"}
        from tasks.watchdog import WATCHDOG_EXIT_CODE

        children = [Child("web", cli_argv("web")),
                    # quiet: Celery says "worker: Warm shutdown" on stdout; its logs go to stderr
                    Child("worker", cli_argv("worker"), restart_codes=(WATCHDOG_EXIT_CODE,), quiet=True),
                    Child("beat", cli_argv("beat"))]
        sandbox = None
        if settings.sandbox_mode:
            from cli.sandbox_mode import plan_sandbox

            sandbox = plan_sandbox(settings)
            env.update(sandbox.env)
            sandbox.sandbox_child.quiet = True  # its banner repeats what the part line says
            children.insert(0, sandbox.sandbox_child)
        supervisor = Supervisor(children=children, env=env)
        supervisor.start()
        code = 0
        summary: Any = None
        try:
            base = f"http://{settings.host}:{settings.port}"
            alive = lambda: all(c.process is not None and c.process.poll() is None for c in supervisor.children)  # noqa: E731
            feed = _wire_sandbox(settings, urls.database_url, sandbox) if sandbox is not None else None
            if feed == ():
                code = 1
            elif wait_until_ready(f"{base}/readyz", timeout=60, alive=alive):
                if sandbox is not None and feed and settings.simulator_rate > 0:
                    simulator = sandbox.simulator_child(*feed, settings.simulator_rate)
                    simulator.quiet = True  # a progress bar would fight the summary lines
                    supervisor.add(simulator, env)
                for line in _part_lines(settings, supervisor, base, sandbox.url if sandbox is not None else ""):
                    click.echo(line)
                click.echo(f"leadbridge is running at {base}  (Ctrl-C to stop)")
                sys.stdout.flush()
                if settings.run_summary_seconds > 0:
                    from cli.run_summary import RunSummary

                    summary = RunSummary(urls.database_url, settings.run_summary_seconds)
                    summary.start()
                code = supervisor.wait()
            else:
                log.error("run.web_not_ready", extra={"url": f"{base}/readyz", "then": "stopping"})
                code = 1
        finally:
            if summary is not None:
                summary.stop()
            supervisor.stop()
            click.echo("leadbridge stopped")
    sys.exit(code)


def _part_lines(settings: Any, supervisor: Supervisor, base: str, sandbox_url: str) -> list[str]:
    """One line per running part of `run`: where it listens or how it is set up, and its pid."""
    lines = []
    for child in supervisor.children:
        pid = child.process.pid if child.process is not None else "?"
        if child.name == "sandbox":
            lines.append(f"sandbox CRM: {sandbox_url}  (pid {pid})")
        elif child.name == "web":
            processes = f"{settings.web_workers} server process" + ("es" if settings.web_workers != 1 else "")
            lines.append(f"web: {base}  (pid {pid}, {processes})")
        elif child.name == "worker":
            lines.append(f"worker: pid {pid}, concurrency {settings.worker_concurrency}, queues {','.join(QUEUES)}")
        elif child.name == "beat":
            lines.append(f"beat: pid {pid}")
        elif child.name == "simulator":
            lines.append(f"simulator: pid {pid}, {settings.simulator_rate:g} events/s into the sandbox CRM and web")
        else:
            lines.append(f"{child.name}: pid {pid}")
    return lines


def _wire_sandbox(settings: Any, database_url: str, sandbox: Any) -> tuple[str, ...]:
    """Wire the sandbox to leadbridge; (events URL, events secret) for the simulator, () when it failed."""
    from cli.sandbox_mode import wait_for_sandbox, wire_sandbox

    try:
        wait_for_sandbox(sandbox.url)
        return wire_sandbox(settings, database_url, sandbox)
    except Exception as exc:  # the sandbox is a convenience: say what failed instead of a traceback
        log.error("run.sandbox_failed", extra={"error": f"{type(exc).__name__}: {exc}", "then": "stopping"})
        return ()


@cli.command()
def web() -> None:
    """Run only the web process (gunicorn): webhooks, admin UI, API, health and metrics."""
    from cli.web import WebServer, prepare_multiprocess_metrics

    settings = settings_or_exit()
    configure_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with embedded_services(settings) as urls:
        os.environ.update(urls.as_env())
        prepare_multiprocess_metrics(settings.data_dir)
        WebServer(settings).run()


@cli.command()
@click.option("--queues", "-Q", default=",".join(QUEUES), show_default=True, help="Comma-separated queues.")
@click.option("--concurrency", "-c", type=int, default=None, help="Worker processes (default from settings).")
def worker(queues: str, concurrency: int | None) -> None:
    """Run only a Celery worker consuming QUEUES (it exits with code 75 if it stops consuming; restart it)."""
    from tasks import watchdog
    from tasks.celery_app import create_celery

    settings = settings_or_exit()
    configure_logging(settings)
    keep_celery_off_logging()
    unknown = sorted(set(q.strip() for q in queues.split(",")) - set(QUEUES))
    if unknown:
        fail(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}")
    with embedded_services(settings) as urls:
        os.environ.update(urls.as_env())
        app = create_celery(settings, urls)
        watchdog.install(settings.worker_watchdog_seconds, concurrency or settings.worker_concurrency)
        code = watchdog.run_worker(
            app,
            [
                "--quiet",  # no banner: it is not a log record (and would break a JSON log stream)
                "worker",
                f"--queues={queues}",
                f"--concurrency={concurrency or settings.worker_concurrency}",
                f"--loglevel={settings.log_level}",
                "--without-gossip",
                "--without-mingle",
                f"--hostname=leadbridge-{os.getpid()}@%h",
            ]
        )
    sys.exit(code)


@cli.command()
def beat() -> None:
    """Run only the periodic scheduler (sweeper, decay re-scoring, retraining, retention)."""
    from tasks.celery_app import beat_schedule, create_celery

    settings = settings_or_exit()
    configure_logging(settings)
    keep_celery_off_logging()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with embedded_services(settings) as urls:
        os.environ.update(urls.as_env())
        app = create_celery(settings, urls)
        app.conf.beat_schedule = beat_schedule()
        app.start(["--quiet", "beat", f"--loglevel={settings.log_level}"])


cli.add_command(doctor)
cli.add_command(sources)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="leadbridge")


if __name__ == "__main__":
    main()
