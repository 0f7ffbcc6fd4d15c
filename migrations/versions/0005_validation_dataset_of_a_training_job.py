"""validation dataset of a training job

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 23:48:22.882949
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _sqlite_sequence() -> int | None:
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        return None
    query = sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'training_jobs'")
    return bind.execute(query).scalar()


def _restore_sqlite_sequence(seq: int | None) -> None:
    # The copied table's counter restarts at its largest id; ids of deleted jobs above it
    # would be handed out again.
    if seq is None:
        return
    bind = op.get_bind()
    bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'training_jobs'"))
    bind.execute(
        sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('training_jobs', :seq)"),
        {'seq': seq},
    )


def upgrade() -> None:
    # SQLite cannot add a foreign key in place, so batch mode copies the table there; the copy
    # must keep AUTOINCREMENT and its counter (job ids name runs/{id} folders and must never
    # be reused).
    seq = _sqlite_sequence()
    with op.batch_alter_table(
        'training_jobs', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.add_column(sa.Column('val_dataset_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('val_dataset_sha256', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_training_jobs_val_dataset_id'), ['val_dataset_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_training_jobs_val_dataset_id_datasets'), 'datasets', ['val_dataset_id'], ['id'], ondelete='SET NULL')
    _restore_sqlite_sequence(seq)


def downgrade() -> None:
    seq = _sqlite_sequence()
    with op.batch_alter_table(
        'training_jobs', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_training_jobs_val_dataset_id_datasets'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_training_jobs_val_dataset_id'))
        batch_op.drop_column('val_dataset_sha256')
        batch_op.drop_column('val_dataset_id')
    _restore_sqlite_sequence(seq)
