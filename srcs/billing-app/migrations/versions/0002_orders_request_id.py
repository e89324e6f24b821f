"""Store with each order the request id of the POST /api/billing that placed it (the message's correlation id), so
that a 200 can be traced to its row. Null for orders stored before, or published without one."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("orders", sa.Column("request_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "request_id")
