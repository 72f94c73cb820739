<?php
// A minimal Chef client in the style of the vendor's PHP sample: pair with
// Authentication.authenticateClient (the call waits until someone approves the device), then make
// a data call with the token in Authorization (sent bare, as the vendor's clients do).
// Plain PHP: file_get_contents with a stream context, no extension needed.
//
//   php chef_client.php http://127.0.0.1:8080/api/json-rpc/v1 my-device-id "Back office PC"

$url = $argv[1] ?? 'http://127.0.0.1:8080/api/json-rpc/v1';
$deviceId = $argv[2] ?? 'php-sample';
$deviceName = $argv[3] ?? 'PHP sample';

function rpc($url, $method, $params, $id, $token = null)
{
    $headers = "Content-Type: application/json\r\nUser-Agent: chef-php-sample/1.0\r\n";
    if ($token !== null) {
        $headers .= "Authorization: " . $token . "\r\n";
    }
    $context = stream_context_create(array(
        'http' => array(
            'method' => 'POST',
            'header' => $headers,
            'content' => json_encode(array(
                'jsonrpc' => '2.0',
                'method' => $method,
                'params' => $params,
                'id' => $id,
            )),
            'timeout' => 75, // above the 60 s approval window
            'ignore_errors' => true,
        ),
    ));
    $body = file_get_contents($url, false, $context);
    if ($body === false) {
        fwrite(STDERR, "request to $url failed\n");
        exit(2);
    }
    $response = json_decode($body, true);
    if (!is_array($response) || !array_key_exists('result', $response)) {
        fwrite(STDERR, "not a JSON-RPC result: $body\n");
        exit(2);
    }
    return $response['result'];
}

$auth = rpc($url, 'Authentication.authenticateClient',
    array(array('device_id' => $deviceId, 'device_name' => $deviceName)), 1);
if (!$auth['success']) {
    fwrite(STDERR, "error {$auth['error_num']}: {$auth['error_message']}\n");
    exit(1);
}
$token = $auth['data']['token'];
echo "token " . $token . "\n";
echo "new_device " . ($auth['data']['new_device'] ? 'true' : 'false') . "\n";

$data = rpc($url, 'Reports.getSales', array(array('from' => '2026-01-01')), 2, $token);
echo "data " . json_encode($data) . "\n";
