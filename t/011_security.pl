# Security against a real network peer: TLS verified for real with a
# throwaway CA (cobalt.ca_file), redirects never followed, hostile answers
# that never crash or stall the worker (a send with one is 'unknown', a
# poll with one is a failed poll), and per-account grants through the
# worker.
use strict;
use warnings;

use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Utils;
use Test::More;

# ---------------------------------------------------------------------
# A throwaway CA, a certificate for 127.0.0.1 and one for another name.
# ---------------------------------------------------------------------
my $pki = tempdir(CLEANUP => 1);
chmod 0755, $pki;
sub openssl { run_log([ 'openssl', @_ ]) or die "openssl @_ failed"; }
openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=cobalt test CA',
	'-keyout', "$pki/ca.key", '-out', "$pki/ca.pem");
for my $cert ([ 'good', 'IP:127.0.0.1' ], [ 'wrong', 'DNS:not-this-host.example' ])
{
	my ($name, $san) = @$cert;
	openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', "/CN=$name", '-keyout', "$pki/$name.key",
		'-out', "$pki/$name.csr");
	PostgreSQL::Test::Utils::append_to_file("$pki/$name.ext", "subjectAltName = $san\n");
	openssl('x509', '-req', '-in', "$pki/$name.csr", '-CA', "$pki/ca.pem", '-CAkey', "$pki/ca.key",
		'-CAcreateserial', '-days', '2', '-extfile', "$pki/$name.ext", '-out', "$pki/$name.pem");
}
chmod 0644, glob("$pki/*");

my $mock = start_mock();
my $tls = start_mock(tls_cert => "$pki/good.pem", tls_key => "$pki/good.key", ca => "$pki/ca.pem");
my $wrong = start_mock(tls_cert => "$pki/wrong.pem", tls_key => "$pki/wrong.key", insecure => 1);
my $node = cobalt_node('security', $mock, conf => "cobalt.request_timeout = '5s'\n");

sub set_conf
{
	my (%conf) = @_;
	for my $name (sort keys %conf)
	{
		if (defined $conf{$name})
		{
			$node->safe_psql('app', "ALTER SYSTEM SET cobalt.$name = " . sql_quote($conf{$name}));
		}
		else
		{
			$node->safe_psql('app', "ALTER SYSTEM RESET cobalt.$name");
		}
	}
	$node->reload;
	sleep 1;
}

sub worker_pid
{
	return $node->safe_psql('app', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cobalt worker'");
}
ok(wait_until(sub { worker_pid() ne '' }, 30), 'worker running');
my $pid = worker_pid();

# ---------------------------------------------------------------------
# TLS: without the CA the peer is not trusted, nothing is sent, the job
# waits queued with a clear error; with cobalt.ca_file it goes out once.
# ---------------------------------------------------------------------
set_conf(api_url => $tls->{url});
my $t1 = submit($node, 'appointment.create', { mrn => '1', _mock => { key => 'tls-1' } });
ok(wait_until(sub { (job_row($node, $t1)->{attempts} // 0) >= 2 }, 30), 'untrusted certificate: the send is retried');
my $row = job_row($node, $t1);
like($row->{last_error}, qr/could not connect: .*(certificate|SSL)/i, "with a clear error ($row->{last_error})");
ok(wait_until(sub { job_row($node, $t1)->{state} eq 'queued' }, 10), 'and the job waits queued (nothing was sent)');
is(scalar @{ mock_requests($tls) }, 0, 'no request reached the server');

set_conf(ca_file => "$pki/ca.pem");
is(wait_for_state($node, $t1, 'succeeded', 60), 'succeeded', 'with cobalt.ca_file the job goes out and succeeds');
is(post_counts($tls)->{'tls-1'}, 1, 'exactly one POST reached the server');
ok(scalar(grep { $_->{method} eq 'GET' } @{ mock_requests($tls) }) >= 1, 'and its polls went over TLS too');

# the right CA but a certificate for another name: refused
set_conf(api_url => $wrong->{url});
my $t2 = submit($node, 'appointment.create', { mrn => '2', _mock => { key => 'tls-wrong' } });
ok(wait_until(sub { (job_row($node, $t2)->{attempts} // 0) >= 1 && job_row($node, $t2)->{state} eq 'queued' }, 30),
	'a certificate for another host name: the job waits queued');
like(job_row($node, $t2)->{last_error}, qr/could not connect: .*(certificate|name|SSL)/i,
	'as a connection never made (' . job_row($node, $t2)->{last_error} . ')');
is(scalar @{ mock_requests($wrong) }, 0, 'and nothing reached that server');
$node->safe_psql('app', "SELECT cobalt_cancel($t2)");

# a CA file that cannot be read: a clear error, nothing sent
set_conf(api_url => $tls->{url}, ca_file => "$pki/no-such-ca.pem");
my $t3 = submit($node, 'appointment.create', { mrn => '3', _mock => { key => 'tls-noca' } });
ok(wait_until(sub { (job_row($node, $t3)->{attempts} // 0) >= 1 && job_row($node, $t3)->{state} eq 'queued' }, 30),
	'an unreadable CA file: the job waits queued');
like(job_row($node, $t3)->{last_error}, qr/could not connect/i,
	'with the reason (' . job_row($node, $t3)->{last_error} . ')');
is(post_counts($tls)->{'tls-noca'} // 0, 0, 'nothing was sent');
set_conf(ca_file => "$pki/ca.pem");
is(wait_for_state($node, $t3, 'succeeded', 60), 'succeeded', 'and it goes out once the CA file is right');
set_conf(api_url => $mock->{url}, ca_file => undef);

# A host name that does not resolve: nothing can have reached Cobalt, so
# the job waits queued and goes out once the name is right.
set_conf(api_url => 'http://cobalt-test-host.invalid/v1');
my $dns = submit($node, 'appointment.create', { mrn => '1', _mock => { key => 'dns' } });
ok(wait_until(sub { (job_row($node, $dns)->{attempts} // 0) >= 2 && job_row($node, $dns)->{state} eq 'queued' }, 30),
	'a host name that does not resolve: retried, queued meanwhile');
like(job_row($node, $dns)->{last_error}, qr/could not connect: .*resolve/i,
	'as a connection never made (' . job_row($node, $dns)->{last_error} . ')');
set_conf(api_url => $mock->{url});
is(wait_for_state($node, $dns, 'succeeded', 60), 'succeeded', 'it goes out once the name resolves');
is(post_counts($mock)->{dns}, 1, 'exactly once');

# ---------------------------------------------------------------------
# Redirects are never followed: not to file://, not to another local
# server.  A send answered with one is unknown; a poll, a failed poll.
# ---------------------------------------------------------------------
my $target = start_mock();
my $r1 = submit($node, 'appointment.create',
	{ mrn => '1', _mock => { key => 'redir-file', send => 'redirect', location => 'file:///etc/passwd' } });
is(wait_for_state($node, $r1, 'unknown', 30), 'unknown', 'a send redirected to file:// is unknown');
like(job_row($node, $r1)->{error}, qr{HTTP status 302, a redirect to file:///etc/passwd \(never followed\)},
	'and says where it pointed');
my $r2 = submit($node, 'appointment.create',
	{ mrn => '1', _mock => { key => 'redir-local', send => 'redirect', status => 307,
			location => "$target->{url}/appointments" } });
is(wait_for_state($node, $r2, 'unknown', 30), 'unknown', 'a send redirected to another local port is unknown');
like(job_row($node, $r2)->{error}, qr/HTTP status 307, a redirect to .*never followed/, 'never followed');
my $r3 = submit($node, 'appointment.create',
	{ mrn => '1', _mock => { key => 'redir-poll', poll => 'redirect', poll_times => 2,
			poll_location => "$target->{url}/webhook-events?job_id=1" } });
ok(wait_until(sub { (job_row($node, $r3)->{last_error} // '') =~ /poll answered with HTTP status 302, a redirect/ }, 30),
	'a redirected poll is a failed poll');
is(wait_for_state($node, $r3, 'succeeded', 30), 'succeeded', 'and the job succeeds once polls answer');
is(scalar @{ mock_requests($target) }, 0, 'no request ever reached the redirect target');
is(post_counts($mock)->{$_}, 1, "$_: one POST") for qw(redir-file redir-local redir-poll);

# ---------------------------------------------------------------------
# Hostile answers.  Sends: the worker cannot tell what Cobalt did, so
# 'unknown' (never resent).  Polls: a failed poll, the job keeps polling.
# ---------------------------------------------------------------------
my $deep = ('{"a":' x 100) . '1' . ('}' x 100);
my %hostile = (
	'invalid-utf8' => "{\"success\":true,\"job_id\":\"j\xff\xfe\"}",
	'nul-escape' => '{"success":true,"job_id":"a\\u0000b"}',
	'raw-nul' => "{\"success\":true,\"job_id\":\"a\x00b\"}",
	'deep' => "{\"job_id\":\"j\",\"x\":$deep}",
	'number-out-of-range' => '{"job_id":"j","n":1e400}',
	'big-integer-job-id' => '{"job_id":123456789012345678901234567890}',
	'duplicate-keys' => '{"job_id":"first","job_id":"second","success":true}',
	'job-id-object' => '{"success":true,"job_id":{"id":"x"}}',
	'not-json' => '<html>oops</html>',
	'truncated' => '{"success":true,"job_id":"j',
);
my %send_job;
for my $case (sort keys %hostile)
{
	$send_job{$case} = submit($node, 'appointment.create',
		{ mrn => '1', _mock => { key => "hostile-send-$case", send => 'raw', body_b64 => encode_base64($hostile{$case}, '') } });
}
$send_job{'over-size-cap'} = submit($node, 'appointment.create',
	{ mrn => '1', _mock => { key => 'hostile-send-over-size-cap', send => 'huge', size => 9 * 1024 * 1024 } });
for my $case (sort keys %send_job)
{
	is(wait_for_state($node, $send_job{$case}, [ 'unknown', 'polling', 'succeeded', 'failed' ], 30), 'unknown',
		"send answered with $case: unknown");
	is(post_counts($mock)->{"hostile-send-$case"}, 1, "send answered with $case: POSTed once");
}
like(job_row($node, $send_job{'over-size-cap'})->{error}, qr/size limit|unreadable|no answer/i, 'over the size cap: said so');

my %poll_hostile = (
	%hostile,
	'events-object' => '{"success":true,"webhook_events":{"event_type":"appointment.failed"}}',
	'events-string' => '{"success":true,"webhook_events":"appointment.failed"}',
	'event-type-number' => '{"success":true,"webhook_events":[{"event_type":5}]}',
	'duplicate-events' => '{"webhook_events":[],"webhook_events":[{"event_type":"appointment.failed"}]}',
);
my %poll_job;
for my $case (sort keys %poll_hostile)
{
	$poll_job{$case} = submit($node, 'appointment.create',
		{ mrn => '1', _mock => { key => "hostile-poll-$case", poll => 'raw', poll_times => 2,
				poll_body_b64 => encode_base64($poll_hostile{$case}, '') } });
}
$poll_job{'over-size-cap'} = submit($node, 'appointment.create',
	{ mrn => '1', _mock => { key => 'hostile-poll-over-size-cap', poll => 'huge', poll_times => 2, poll_size => 9 * 1024 * 1024 } });
for my $case (sort keys %poll_job)
{
	is(wait_for_state($node, $poll_job{$case}, [ 'succeeded', 'failed', 'unknown', 'timed_out' ], 30), 'succeeded',
		"polls answered with $case: failed polls, then the true outcome");
	my $remote = job_row($node, $poll_job{$case})->{remote_job_id};
	my $polls = grep { $_->{path} eq "/v1/webhook-events?job_id=$remote" } @{ mock_requests($mock) };
	ok($polls >= 3, "polls answered with $case: polled again after each ($polls polls)");
}

# A Retry-After far in the future is clamped to 10 minutes.
my $far = submit($node, 'appointment.create',
	{ mrn => '1', _mock => { key => 'far-429', send => '429', retry_after => '99999999', send_times => 1 } });
my $far_date = submit($node, 'appointment.create',
	{ mrn => '1', _mock => { key => 'far-429-date', send => '429', retry_after => 'Fri, 31 Dec 9999 23:59:59 GMT', send_times => 1 } });
for my $id ($far, $far_date)
{
	ok(wait_until(sub { (job_row($node, $id)->{attempts} // 0) == 1 && job_row($node, $id)->{state} eq 'queued' }, 30),
		"job $id: 429 with a far-future Retry-After, queued again");
	my $wait = $node->safe_psql('app', "SELECT extract(epoch FROM next_due_at - now())::int FROM cobalt.jobs WHERE id = $id");
	ok($wait > 540 && $wait <= 600, "job $id: next try in at most 10 minutes ($wait s)");
	$node->safe_psql('app', "SELECT cobalt_cancel($id)");
}

is(worker_pid(), $pid, 'the worker never restarted through all of it');
my $after = submit($node, 'appointment.create', { mrn => '1' });
is(wait_for_state($node, $after, 'succeeded', 30), 'succeeded', 'and a normal job still succeeds');
unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC|TRAP/, 'no crash in the log');

# ---------------------------------------------------------------------
# Grants through the worker: a role submits for its account, the request
# carries that account's token, the role waits for the outcome; another
# role cannot see the job.
# ---------------------------------------------------------------------
add_account($node, 'clinic-g', 'at_live_granted_g');
$node->safe_psql('app', q{
	CREATE ROLE app_g NOLOGIN;
	CREATE ROLE app_web NOLOGIN IN ROLE app_g;
	CREATE ROLE app_other NOLOGIN;
	SELECT cobalt_grant_account('clinic-g', 'app_g');
	SELECT cobalt_grant_account('clinic-a', 'app_other');
});
my $gid = $node->safe_psql('app', q{
	SET ROLE app_web;
	SELECT cobalt_submit('appointment.create', '{"mrn": "g1", "_mock": {"key": "granted"}}')});
is($node->safe_psql('app', "SET ROLE app_web; SELECT state FROM cobalt_wait($gid, '30 s')"), 'succeeded',
	"a member of the granted role waits for its job's outcome");
my ($post) = grep { $_->{method} eq 'POST' && ($_->{json}{_mock}{key} // '') eq 'granted' } @{ mock_requests($mock) };
is($post->{headers}{access_token}, 'at_live_granted_g', "the request carried the account's token");
is($node->safe_psql('app', "SELECT submitted_by FROM cobalt.jobs WHERE id = $gid"), 'app_web', 'submitted_by: the member');
my ($rc, $out, $err) = $node->psql('app', "SET ROLE app_other; SELECT state FROM cobalt_wait($gid, '1 s')");
like($err, qr/cobalt job $gid does not exist/, 'another role cannot wait on it');
is($node->safe_psql('app', "SET ROLE app_other; SELECT count(*) FROM cobalt.jobs WHERE id = $gid"), '0',
	'nor see it in cobalt.jobs');

$node->stop;
stop_mock($_) for ($mock, $tls, $wrong, $target);
done_testing();
