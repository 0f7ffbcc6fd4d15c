"""evaluations and their per-example results; blind review votes; version lineage

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 00:10:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'evaluations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('dataset_id', sa.Integer(), nullable=True),
        sa.Column('job_id', sa.Integer(), nullable=True),
        sa.Column('source_name', sa.String(length=255), nullable=False),
        sa.Column('source_sha256', sa.String(length=64), nullable=False),
        sa.Column('versions', sa.JSON(), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('cancel_requested', sa.Boolean(), nullable=False),
        sa.Column('progress', sa.JSON(), nullable=True),
        sa.Column('results', sa.JSON(), nullable=True),
        sa.Column('methods', sa.JSON(), nullable=True),
        sa.Column('example_count', sa.Integer(), nullable=False),
        sa.Column('task_id', sa.String(length=64), nullable=True),
        sa.Column('worker', sa.String(length=255), nullable=True),
        sa.Column('error_code', sa.String(length=64), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('error_params', sa.JSON(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['job_id'], ['training_jobs.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_evaluations_project_id', 'evaluations', ['project_id'])
    op.create_index('ix_evaluations_dataset_id', 'evaluations', ['dataset_id'])
    op.create_index('ix_evaluations_job_id', 'evaluations', ['job_id'])
    op.create_index('ix_evaluations_status', 'evaluations', ['status'])
    op.create_table(
        'evaluation_examples',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('evaluation_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('subset', sa.String(length=16), nullable=False),
        sa.Column('messages', sa.JSON(), nullable=False),
        sa.Column('reference', sa.Text(), nullable=False),
        sa.Column('outputs', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['evaluation_id'], ['evaluations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('evaluation_id', 'position', name='uq_evaluation_examples_position'),
    )
    op.create_index(
        'ix_evaluation_examples_evaluation_id', 'evaluation_examples', ['evaluation_id']
    )
    # Plain nullable columns (no FOREIGN KEY): SQLite adds them in place, so no table is copied
    # and the AUTOINCREMENT counters of training_jobs and model_versions stay untouched. The
    # services check these ids and delete review votes with their evaluation.
    op.add_column('comparison_votes', sa.Column('evaluation_id', sa.Integer(), nullable=True))
    op.add_column('comparison_votes', sa.Column('example_position', sa.Integer(), nullable=True))
    op.add_column('comparison_votes', sa.Column('scores', sa.JSON(), nullable=True))
    op.create_index(
        'ix_comparison_votes_evaluation_id', 'comparison_votes', ['evaluation_id']
    )
    op.add_column('training_jobs', sa.Column('parent_version_id', sa.Integer(), nullable=True))
    op.add_column('model_versions', sa.Column('parent_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    for table, column in (('model_versions', 'parent_id'), ('training_jobs', 'parent_version_id')):
        seq = None
        bind = op.get_bind()
        if bind.dialect.name == 'sqlite':
            seq = bind.execute(
                sa.text('SELECT seq FROM sqlite_sequence WHERE name = :t'), {'t': table}
            ).scalar()
        with op.batch_alter_table(table, table_kwargs={'sqlite_autoincrement': True}) as batch:
            batch.drop_column(column)
        if seq is not None:
            bind.execute(sa.text('DELETE FROM sqlite_sequence WHERE name = :t'), {'t': table})
            bind.execute(
                sa.text('INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :seq)'),
                {'t': table, 'seq': seq},
            )
    op.drop_index('ix_comparison_votes_evaluation_id', table_name='comparison_votes')
    with op.batch_alter_table('comparison_votes') as batch:
        batch.drop_column('scores')
        batch.drop_column('example_position')
        batch.drop_column('evaluation_id')
    op.drop_index('ix_evaluation_examples_evaluation_id', table_name='evaluation_examples')
    op.drop_table('evaluation_examples')
    for name in ('status', 'job_id', 'dataset_id', 'project_id'):
        op.drop_index(f'ix_evaluations_{name}', table_name='evaluations')
    op.drop_table('evaluations')
