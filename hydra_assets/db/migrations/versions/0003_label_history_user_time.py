"""index label_history by user and time (the Labeler's "you labeled N today")

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('label_history', schema=None) as batch_op:
        batch_op.create_index('ix_label_history_user_time', ['user_id', 'labeled_at'], unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        # InnoDB let the new index serve the user_id foreign key and dropped its own; put that one back first
        op.create_index('user_id', 'label_history', ['user_id'], unique=False)
    with op.batch_alter_table('label_history', schema=None) as batch_op:
        batch_op.drop_index('ix_label_history_user_time')
