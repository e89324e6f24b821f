"""Baseline of the "inventory direct" scenario: the least a Flask + SQLAlchemy app can do for GET /api/movies/<id>.

No validation, no request ids, no access log, no error shaping: one primary-key lookup and jsonify. It runs under
gunicorn with the inventory's own worker model (gthread, same workers and threads, from the same settings), from
srcs/inventory-app/.venv, so the difference between the two is what the inventory's own code costs.

    INVENTORY_DB_*=... BENCH_MINIMAL_PORT=28090 srcs/inventory-app/.venv/bin/python bench/minimal_inventory.py
"""

from __future__ import annotations

import os

from flask import Flask, abort, jsonify
from gunicorn.app.base import BaseApplication
from sqlalchemy import BigInteger, String, Text, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

WORKERS = int(os.environ.get("INVENTORY_WORKERS", "2"))  # the inventory's Config defaults
THREADS = int(os.environ.get("INVENTORY_THREADS", "8"))


class Base(DeclarativeBase):
    pass


class Movie(Base):
    __tablename__ = "movies"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)


def create_app() -> Flask:
    engine = create_engine(
        URL.create(
            "postgresql+psycopg2",
            username=os.environ["INVENTORY_DB_USER"],
            password=os.environ["INVENTORY_DB_PASSWORD"],
            host=os.environ["INVENTORY_DB_HOST"],
            port=int(os.environ["INVENTORY_DB_PORT"]),
            database=os.environ["INVENTORY_DB_NAME"],
        ),
        pool_size=THREADS,  # one connection per thread, as the inventory has
    )
    app = Flask(__name__)

    @app.get("/api/movies/<int:movie_id>")
    def get_movie(movie_id: int):
        with Session(engine) as session:
            movie = session.get(Movie, movie_id)
            if movie is None:
                abort(404)
            return jsonify({"id": movie.id, "title": movie.title, "description": movie.description})

    @app.get("/health")
    def health():
        return {"status": "ok"}

    return app


class Server(BaseApplication):
    def load_config(self) -> None:
        settings = {
            "bind": f"127.0.0.1:{os.environ['BENCH_MINIMAL_PORT']}",
            "workers": WORKERS,
            "worker_class": "gthread",
            "threads": THREADS,
            "keepalive": 75,
            "timeout": 30,
            "loglevel": "warning",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app()


if __name__ == "__main__":
    Server().run()
