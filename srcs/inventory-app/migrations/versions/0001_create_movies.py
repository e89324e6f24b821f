"""Create movies, with a trigram index for the title search."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    # pg_trgm is a trusted extension (PostgreSQL >= 13): the database owner may create it, no superuser.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "movies",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.CheckConstraint("length(btrim(title)) > 0", name="ck_movies_title_not_blank"),
    )
    op.create_index(
        "ix_movies_title_trgm",
        "movies",
        ["title"],
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_movies_title_trgm", table_name="movies")
    op.drop_table("movies")
