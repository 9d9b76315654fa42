"""the message itself: Reply-To, scheduling, merge values, unsubscribe, attachments, suppressions

Sends gain reply_to, send_at, unsubscribe_base and the `scheduled` state; messages gain their
recipient's merge values and unsubscribe token; attachments are stored once per send; the
do-not-email list is a table of its own.

Revision ID: 7c1e5a9d2b40
Revises: a7c3e9f1b2d4
Create Date: 2026-12-01 04:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7c1e5a9d2b40'
down_revision = "a7c3e9f1b2d4"
branch_labels = None
depends_on = None

OLD_SEND_STATUSES = ('flagged', 'queued', 'sending', 'done', 'cancelled')
NEW_SEND_STATUSES = ('flagged', 'scheduled', 'queued', 'sending', 'done', 'cancelled')


def _set_send_statuses(values):
    # The states are a CHECK constraint, replaced (on SQLite by batch mode's copy of the table).
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_sends_send_status'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_sends_send_status'), sa.column('status').in_(values)
        )


def upgrade():
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reply_to', sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column('send_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('unsubscribe_base', sa.String(length=255), nullable=True))
    _set_send_statuses(NEW_SEND_STATUSES)

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merge_values', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('unsubscribe_token', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_messages_unsubscribe_token'), ['unsubscribe_token'])

    op.create_table('attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('send_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=127), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['send_id'], ['sends.id'], name=op.f('fk_attachments_send_id_sends'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_attachments_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments'))
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_send_id'), ['send_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachments_user_id'), ['user_id'], unique=False)

    op.create_table('suppressions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_suppressions_created_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppressions')),
    sa.UniqueConstraint('email', name=op.f('uq_suppressions_email'))
    )


def downgrade():
    op.drop_table('suppressions')
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_user_id'))
        batch_op.drop_index(batch_op.f('ix_attachments_send_id'))
    op.drop_table('attachments')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_messages_unsubscribe_token'), type_='unique')
        batch_op.drop_column('unsubscribe_token')
        batch_op.drop_column('merge_values')
    op.execute("UPDATE sends SET status = 'cancelled' WHERE status = 'scheduled'")
    _set_send_statuses(OLD_SEND_STATUSES)
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.drop_column('unsubscribe_base')
        batch_op.drop_column('send_at')
        batch_op.drop_column('reply_to')
