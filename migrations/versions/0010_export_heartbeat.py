"""exports: heartbeat_at, so an export whose worker died is failed instead of running forever

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 11:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no constraint): SQLite takes it in place, so the table keeps
    # its AUTOINCREMENT ids (a batch copy would rebuild it).
    op.add_column('exports', sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('exports') as batch:
        batch.drop_column('heartbeat_at')
