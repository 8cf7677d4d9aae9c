# All ten seeded operations reach 'succeeded' through the worker, each sent
# with the right method, path, headers and body, and polled to its event.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = start_mock();
my $node = cobalt_node('ops', $mock);
my $json = JSON::PP->new->canonical(1);

my @cases = (
	[ 'appointment.create', 'POST', '/v1/appointments',
		{ mrn => '1234', location => 'L1', provider => 'P1', type => 'follow-up',
		  datetime => '2026-12-01T10:00:00-05:00', custom_field => { nested => [1, 2.50, 'x/y'] } },
		'appointment.created' ],
	[ 'appointment.update', 'PATCH', '/v1/appointments/apt%2F42%20x',
		{ id => 'apt/42 x', status => 'confirmed', note => 'Patient called' },
		'appointment.updated' ],
	[ 'patient.create', 'POST', '/v1/patients',
		{ first_name => 'Ada', last_name => 'Lovelace', dob => '1815-12-10', sex => 'F' },
		'patient.created' ],
	[ 'note.create', 'POST', '/v1/notes',
		{ appointment_id => 'a1', note => { subjective => 'ok', plan => 'rest' } },
		'note.uploaded' ],
	[ 'task.create', 'POST', '/v1/tasks',
		{ description => 'Call back', patient_mrn => '1234' }, 'task.created' ],
	[ 'message.create', 'POST', '/v1/messages',
		{ provider => 'P1', subject => 'Hello', message => "Line 1\nLine 2 \x{e9}" },
		'message.created' ],
	[ 'insurance.create', 'POST', '/v1/patients/MRN%20007/insurances',
		{ patient_mrn => 'MRN 007', member_id => 'M1', group_id => 'G1', insurance_name => 'Acme' },
		'patient.insurance.added' ],
	[ 'referring_provider.create', 'POST', '/v1/referring-providers',
		{ first_name => 'Greg', last_name => 'House', npi => '1234567890', phone => '555-555-5555' },
		'referring_provider.created' ],
	[ 'telephone_encounter.create', 'POST', '/v1/telephone-encounters',
		{ patient_mrn => '1234', provider_id => 'P1', location_id => 'L1', assigned_to_id => 'U1' },
		'telephone_encounter.created' ],
);

my %ids;
for my $c (@cases)
{
	my ($op, undef, undef, $payload) = @$c;
	$ids{$op} = submit($node, $op, $payload);
}

# numbers keep every digit: the body is jsonb's own text of the payload
my $big_id = submit($node, 'patient.create',
	'{"first_name": "Big", "big": 12345678901234567890.50, "tiny": 1e-30, "unknown_field": [null, true]}');

# document.upload: multipart, file from base64
my $file = "%PDF-1.4 fake\x00\x01\x02 binary";
my $b64 = MIME_base64($file);
$ids{'document.upload'} = submit($node, 'document.upload',
	{ folder_name => 'Labs', patient_mrn => '1234', document => $b64,
	  filename => 'result.pdf', content_type => 'application/pdf',
	  is_reviewed => JSON::PP::true, is_high_priority => 0, notes => 'see "page 2"' });

for my $op (sort keys %ids)
{
	my $state = wait_for_state($node, $ids{$op}, [qw(succeeded failed unknown timed_out)], 60);
	is($state, 'succeeded', "$op reaches succeeded");
}

my $requests = mock_requests($mock);
for my $c (@cases)
{
	my ($op, $method, $path, $payload, $event) = @$c;
	my $row = job_row($node, $ids{$op});
	my @sent = grep { $_->{method} eq $method && $_->{path} eq $path && $_->{body} !~ /"Big"/ } @$requests;
	is(scalar @sent, 1, "$op: exactly one $method $path");
	my $req = $sent[0] or next;
	is($req->{headers}{client_id}, 'ci_live_test', "$op: client_id header");
	is($req->{headers}{client_secret}, 'cs_live_test', "$op: client_secret header");
	is($req->{headers}{access_token}, 'at_live_a', "$op: access_token header");
	is($req->{headers}{'content-type'}, 'application/json', "$op: JSON content type");
	like($req->{headers}{'user-agent'}, qr{^cobalt-pg/\d}, "$op: user agent");

	# the body is the payload, minus the fields used in the path
	my %expected = %$payload;
	delete $expected{id} if $op eq 'appointment.update';
	delete $expected{patient_mrn} if $op eq 'insurance.create';
	is($json->encode($req->{json}), $json->encode(\%expected), "$op: body is the payload");

	is($row->{event_type}, $event, "$op: event type recorded");
	ok(defined $row->{remote_job_id} && $row->{remote_job_id} ne '', "$op: remote job id");
	ok(defined $row->{result}, "$op: result holds the event data");
	is($row->{attempts}, 1, "$op: one attempt");
	is($row->{http_status}, 200, "$op: http status");
	my @polls = grep { $_->{method} eq 'GET' && $_->{path} eq "/v1/webhook-events?job_id=$row->{remote_job_id}" } @$requests;
	ok(@polls >= 1, "$op: polled by its remote job id");
	ok(defined $row->{finished_at} && defined $row->{accepted_at} && defined $row->{sent_at},
		"$op: timestamps set");
}

# the big number kept every digit, unknown fields went along
is(wait_for_state($node, $big_id, 'succeeded'), 'succeeded', 'patient with big numbers succeeded');
my ($big) = grep { $_->{path} eq '/v1/patients' && $_->{body} =~ /"Big"/ } @{ mock_requests($mock) };
like($big->{body}, qr/"big": 12345678901234567890\.50\b/, 'numbers are sent unchanged');
like($big->{body}, qr/"unknown_field": \[null, true\]/, 'unknown fields are sent');

# document.upload
my ($doc) = grep { $_->{path} eq '/v1/documents' } @$requests;
ok($doc, 'document.upload sent');
like($doc->{headers}{'content-type'}, qr{^multipart/form-data; boundary=}, 'multipart content type');
is($doc->{form}{folder_name}, 'Labs', 'form field folder_name');
is($doc->{form}{patient_mrn}, '1234', 'form field patient_mrn');
is($doc->{form}{is_reviewed}, 'true', 'non-string form field as JSON text');
is($doc->{form}{is_high_priority}, '0', 'number form field as JSON text');
is($doc->{form}{notes}, 'see "page 2"', 'string form field as is');
is($doc->{form}{document}{filename}, 'result.pdf', 'file part filename');
is($doc->{form}{document}{content_type}, 'application/pdf', 'file part content type');
is($doc->{form}{document}{size}, length($file), 'file part size');
is($doc->{form}{document}{sha256}, SHA256_hex($file), 'file part content');
ok(!exists $doc->{form}{filename} && !exists $doc->{form}{content_type},
	'filename and content_type describe the file part only');
is(job_row($node, $ids{'document.upload'})->{event_type}, 'document.uploaded', 'document event');

# every API request carried the three credentials (none was refused)
is(scalar(grep { ($_->{status} // 0) == 401 } @$requests), 0, 'no request lacked credentials');

$node->stop;
stop_mock($mock);
done_testing();

sub MIME_base64
{
	require MIME::Base64;
	return MIME::Base64::encode_base64($_[0], '');
}

sub SHA256_hex
{
	require Digest::SHA;
	return Digest::SHA::sha256_hex($_[0]);
}
