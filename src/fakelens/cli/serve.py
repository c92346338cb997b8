"""``fakelens serve`` (the HTTP service and web page) and ``fakelens keys`` (API keys per tenant)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from fakelens.cli.common import (
    check_writable,
    console,
    fail,
    print_json,
    results,
    user_errors,
    warn_untrained,
)

if TYPE_CHECKING:
    from fakelens.service.config import Settings

app = typer.Typer()
keys_app = typer.Typer(no_args_is_help=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder of the database and stored files (env FAKELENS_DATA_DIR; default ./fakelens-data).",
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://… (default: SQLite in the data dir).",
    ),
]


def _settings(**values: object) -> Settings:
    """Defaults and ``$FAKELENS_*``, overridden by the options given on the command line."""
    from fakelens.service.config import Settings

    return Settings().with_(**values)


@app.command("serve")
@user_errors
def serve_cmd(
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="'default' (shipped ensemble), a registered name, a checkpoint, or a,b,c."
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free one).")] = 8000,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Inference threads, one model copy each (default 1)."),
    ] = None,
    queue: Annotated[
        int | None, typer.Option("--queue", min=0, help="Requests that may wait; beyond: 503 (default 8).")
    ] = None,
    max_upload_mb: Annotated[
        float | None, typer.Option("--max-upload-mb", min=0.001, help="Largest upload in MiB (default 20).")
    ] = None,
    max_pixels: Annotated[
        int | None, typer.Option("--max-pixels", min=1, help="Largest image, width × height (default 40e6).")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option("--rate", min=0, help="Analyses per minute and API key, 0 = no limit (default 30)."),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option("--methods", help="Default methods, comma-separated (default: gradcam,hirescam)."),
    ] = None,
    robustness: Annotated[
        bool | None, typer.Option("--robustness/--no-robustness", help="Grade every heatmap with a badge.")
    ] = None,
    docs: Annotated[
        bool | None,
        typer.Option(
            "--docs/--no-docs",
            help="Serve Swagger UI at /docs (its scripts come from a CDN, pinned and integrity-checked; "
            "default off). The schema is always at /openapi.json.",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Start the HTTP API and web page (uvicorn); Ctrl-C stops it.

    Every setting can also come from the environment as FAKELENS_<OPTION> (e.g. FAKELENS_WORKERS=2); an
    option given here wins."""
    try:
        import uvicorn

        from fakelens.service import create_app
        from fakelens.service.app import load_model
    except ImportError as exc:
        fail(f"the service needs its extra: pip install 'fakelens[service]' ({exc.name} is missing)")
    settings = _settings(
        model=model,
        data_dir=data_dir,
        database_url=database_url,
        workers=workers,
        queue=queue,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024) if max_upload_mb is not None else None,
        max_pixels=max_pixels,
        rate_per_minute=rate,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()) if methods else None,
        robustness=robustness,
        docs=docs,
    )
    if not settings.database_url:
        check_writable(settings.data_dir, "--data-dir")
    _prepare_data_dir(settings.data_dir)
    detector = load_model(settings.model)  # fail here, with one line, before the server starts
    from fakelens.models.registry import untrained_members

    warn_untrained(untrained_members(detector))
    console.print(
        f"fakelens serve: model {settings.model}, data {settings.data_dir}, "
        f"{settings.workers} worker(s), queue {settings.queue}, http://{host}:{port}/",
        highlight=False,
    )
    logging = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)  # the service's own lines (ready, clean-up) too
    logging["loggers"]["fakelens"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    uvicorn.run(create_app(settings, detector), host=host, port=port, log_level=log_level, log_config=logging)


def _prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory and check that no other server holds it, before the model loads: one
    line on failure (else uvicorn would print the error as a traceback from the app's start-up)."""
    from fakelens.service.db import private_dir
    from fakelens.service.repository import DataDirLock

    if not data_dir.exists():
        private_dir(data_dir)
    lock = DataDirLock(data_dir)
    lock.acquire()
    lock.release()


@keys_app.command("create")
@user_errors
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name (created if new).")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an API key for a tenant and print it once (only its hash is stored)."""
    from fakelens.service.db import Database
    from fakelens.service.keys import create_key

    s = _settings(data_dir=data_dir, database_url=database_url)
    if not s.database_url:
        check_writable(s.data_dir, "--data-dir")
    key_id, key = create_key(Database(s.db_url), tenant)
    if json_out:
        print_json({"tenant": tenant, "key_id": key_id, "key": key})
        return
    console.print(f"API key {key_id} for tenant {tenant!r} (shown once; store it now):", highlight=False)
    typer.echo(key)


@keys_app.command("list")
@user_errors
def keys_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List key ids, tenants and whether they are revoked (never the keys)."""
    from fakelens.service.db import Database
    from fakelens.service.keys import list_keys

    keys = list_keys(Database(_existing_db(data_dir, database_url)), tenant)
    if json_out:
        print_json(keys)
        return
    table = Table(Column("key id", no_wrap=True), "tenant", "created", "revoked")  # the id keys revoke needs
    for k in keys:
        table.add_row(
            str(k["key_id"]), escape(str(k["tenant"])), str(k["created_at"]), "yes" if k["revoked"] else "no"
        )
    if keys:
        results.print(table)
    else:
        results.print("no API keys" + (f" for tenant {tenant!r}" if tenant else ""), markup=False)


@keys_app.command("revoke")
@user_errors
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's public id (see `fakelens keys list`).")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Revoke a key; requests with it get 401 from then on."""
    from fakelens.service.db import Database
    from fakelens.service.keys import revoke_key

    if not revoke_key(Database(_existing_db(data_dir, database_url)), key_id):
        fail(f"no API key with id {key_id!r}")
    if json_out:
        print_json({"key_id": key_id, "revoked": True})
        return
    console.print(f"revoked {key_id}", highlight=False, markup=False)


def _existing_db(data_dir: Path | None, database_url: str | None) -> str:
    """The key database's URL for commands that only read or change keys: a SQLite file must exist (they
    must not create an empty database in a mistyped folder)."""
    s = _settings(data_dir=data_dir, database_url=database_url)
    if not s.database_url and not (s.data_dir / "fakelens.db").exists():
        fail(f"no key database in {s.data_dir} (create a key first: fakelens keys create --data-dir …)")
    return s.db_url
