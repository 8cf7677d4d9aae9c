# Secrets never leak.  Client secrets, access tokens and webhook secrets
# are readable only by the owner: not through pg_stat_activity (the
# worker's row included) or pg_settings, and not in the server log.  The
# last is proved over the whole TAP suite: every node runs with
# log_min_messages = debug5 (and PostgreSQL::Test::Cluster's
# log_statement = all), every secret a test hands to cobalt is listed in
# the registry CobaltTest keeps, and this test, which runs last, reads
# every log the suite wrote and looks for each of them.  Run alone, it
# still checks the logs of its own scenario.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = start_mock();
my $node = cobalt_node('secrets', $mock, conf => "cobalt.max_concurrent_requests = 8\n");

# a second account and a webhook secret; then work of every kind: sends,
# polls, failures, credentials Cobalt refuses, errors in the functions
# that take secrets
add_account($node, 'clinic-s', 'at_live_s_SECRET_0042');
set_webhook_secret($node, 'whsec_SECRET_0099_webhook');
my @ids = map { submit($node, 'appointment.create', { mrn => $_ }, 'clinic-s') } 1 .. 3;
push @ids, submit($node, 'patient.create', { mrn => 'x', _mock => { send => 'reject', status => 401 } }, 'clinic-s');
push @ids, submit($node, 'note.create', { appointment_id => 'a', _mock => { outcome => 'failure' } }, 'clinic-s');
for my $id (@ids)
{
	like(wait_for_state($node, $id, [ 'succeeded', 'failed' ], 30), qr/^(succeeded|failed)$/, "job $id reaches its outcome");
}

# a bad secret in a file: refused, and the statement logged holds only
# the file's name
my $bad = $node->data_dir . '/cobalt_bad_secret';
PostgreSQL::Test::Utils::append_to_file(secrets_registry(), "bad_SECRET_with\ttab\n");
PostgreSQL::Test::Utils::append_to_file($bad, "bad_SECRET_with\ttab\n");
my ($ret, $stdout, $stderr) = $node->psql('app', "SELECT cobalt_add_account_from_file('clinic-s', 'cobalt_bad_secret')");
isnt($ret, 0, 'a secret with a control character is refused');
unlike($stderr, qr/bad_SECRET/, 'and the error does not quote it');
unlink $bad;

# requests in flight: nothing in pg_stat_activity holds a secret
my @hung = map { submit($node, 'appointment.create', { mrn => $_, _mock => { key => "hang-$_", send => 'hang' } }, 'clinic-s') } 1 .. 3;
ok(wait_until(sub { (grep { /^hang-/ } keys %{ post_counts($mock) }) == 3 }, 30), 'requests held in flight');
my $activity = $node->safe_psql('app', q{
	SELECT string_agg(concat_ws(' ', backend_type, application_name, state, wait_event_type,
	                            wait_event, query), E'\n')
	FROM pg_stat_activity});
like($activity, qr/cobalt worker/, "the worker's row is there");
my $settings = $node->safe_psql('app', q{SELECT string_agg(name || '=' || setting, E'\n') FROM pg_settings});
my $worker_status = $node->safe_psql('app', 'SELECT cobalt_worker_status()::text');
my @secrets = secrets_used();
for my $secret (@secrets)
{
	unlike($activity, qr/\Q$secret\E/, "pg_stat_activity does not show secret '" . mask($secret) . "'");
	unlike($settings, qr/\Q$secret\E/, "pg_settings does not show it");
	unlike($worker_status, qr/\Q$secret\E/, "cobalt_worker_status() does not show it");
}
$node->stop('immediate');
stop_mock($mock);

# Every server log the suite wrote, this test's included.
my @logs = grep { -f $_ } glob("$PostgreSQL::Test::Utils::log_path/*");
my ($files, $bytes) = (0, 0);
my %found;
for my $file (@logs)
{
	my $text = slurp_file($file);
	$files++;
	$bytes += length $text;
	for my $secret (@secrets)
	{
		push @{ $found{$secret} }, $file =~ s{.*/}{}r if index($text, $secret) >= 0;
	}
}
ok($files >= 2, "read $files log files, $bytes bytes");
ok(scalar(@secrets) >= 5, scalar(@secrets) . ' secrets in the registry');
my $server_logs = join '', map { slurp_file($_) } grep { !m{/regress_log_} } @logs;
like($server_logs, qr/DEBUG:/, 'the logs were written at debug5');
# the control: statements are logged, so a secret written in one would show
like($server_logs, qr/statement: SELECT cobalt_add_account_from_file\('clinic-s', 'cobalt_test_secret_/,
	'the statements that set secrets are in the log, with file names only');
for my $secret (@secrets)
{
	ok(!$found{$secret}, "secret '" . mask($secret) . "' appears in no log"
		  . ($found{$secret} ? " (found in @{ $found{$secret} })" : ''));
}

# A secret shown in a test name only in part.
sub mask
{
	my ($s) = @_;
	$s =~ s/\t/\\t/g;
	return length($s) > 6 ? substr($s, 0, 4) . '…' : '…';
}

done_testing();
