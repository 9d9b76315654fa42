"""OAuth 2.0 (modern authentication): app registrations and OAuth accounts

The organisation's Microsoft and Google app registrations (client secrets encrypted), and on
each account: auth_method oauth2, the grant (delegated or app), the transport (smtp or graph),
the encrypted refresh token of a delegated sign-in and when it was made.

Revision ID: a7c3e9f1b2d4
Revises: 11037fd1ad73
Create Date: 2026-12-01 04:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7c3e9f1b2d4'
down_revision = '11037fd1ad73'
branch_labels = None
depends_on = None


def _enum(name, *values):
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=20)


def _auth_method_check(batch_op, values):
    # The column's CHECK lists the stored strings: replaced whole, by its conventional name.
    batch_op.drop_constraint(op.f('ck_email_accounts_auth_method'), type_='check')
    batch_op.create_check_constraint(
        op.f('ck_email_accounts_auth_method'),
        sa.text('auth_method IN (%s)' % ', '.join(f"'{value}'" for value in values)),
    )


def upgrade():
    op.create_table(
        'oauth_registrations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('microsoft_tenant', sa.String(length=100), nullable=False),
        sa.Column('microsoft_client_id', sa.String(length=100), nullable=False),
        sa.Column('microsoft_client_secret_encrypted', sa.LargeBinary(), nullable=True),
        sa.Column('google_client_id', sa.String(length=200), nullable=False),
        sa.Column('google_client_secret_encrypted', sa.LargeBinary(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_registrations')),
    )
    with op.batch_alter_table('email_accounts', schema=None) as batch_op:
        _auth_method_check(batch_op, ('login', 'plain', 'none', 'oauth2'))
        batch_op.add_column(
            sa.Column('oauth_grant', _enum('oauth_grant', 'delegated', 'app'), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                'transport',
                _enum('transport', 'smtp', 'graph'),
                nullable=False,
                server_default='smtp',
            )
        )
        batch_op.add_column(sa.Column('refresh_token_encrypted', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('signed_in_at', sa.DateTime(), nullable=True))


def downgrade():
    # Fails while OAuth accounts exist: switch them back to a password first.
    with op.batch_alter_table('email_accounts', schema=None) as batch_op:
        batch_op.drop_column('signed_in_at')
        batch_op.drop_column('refresh_token_encrypted')
        # SQLite keeps a column's CHECK after the column: drop them first, by name.
        batch_op.drop_constraint(op.f('ck_email_accounts_transport'), type_='check')
        batch_op.drop_constraint(op.f('ck_email_accounts_oauth_grant'), type_='check')
        batch_op.drop_column('transport')
        batch_op.drop_column('oauth_grant')
        _auth_method_check(batch_op, ('login', 'plain', 'none'))
    op.drop_table('oauth_registrations')
