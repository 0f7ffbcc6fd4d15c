"""errors as codes with parameters (jobs, chat messages, model status); a job's estimate

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 20:55:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain nullable columns: SQLite adds them in place (no table copy), so training_jobs keeps
    # its AUTOINCREMENT counter untouched.
    op.add_column('training_jobs', sa.Column('error_params', sa.JSON(), nullable=True))
    op.add_column('training_jobs', sa.Column('estimate', sa.JSON(), nullable=True))
    op.add_column('chat_messages', sa.Column('error_code', sa.String(length=64), nullable=True))
    op.add_column('chat_messages', sa.Column('error_params', sa.JSON(), nullable=True))
    op.add_column('registered_models', sa.Column('status_params', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('registered_models') as batch_op:
        batch_op.drop_column('status_params')
    with op.batch_alter_table('chat_messages') as batch_op:
        batch_op.drop_column('error_params')
        batch_op.drop_column('error_code')
    seq = None
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        seq = bind.execute(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'training_jobs'")
        ).scalar()
    with op.batch_alter_table(
        'training_jobs', table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.drop_column('estimate')
        batch_op.drop_column('error_params')
    if seq is not None:
        bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'training_jobs'"))
        bind.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('training_jobs', :seq)"),
            {'seq': seq},
        )
