using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace LbAllocator.Kubernetes.Client;

/// <summary>
/// A token from a kubeconfig's credential plugin (user.exec): the command prints an ExecCredential whose
/// status.token is used until its status.expirationTimestamp (for ever when it gives none), then run again.
/// Client certificates from a plugin are not supported: the error says so.
/// </summary>
public sealed class ExecCredential(string command, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string> environment, string apiVersion, TimeProvider time)
    : IBearerToken
{
    /// <summary>Run the plugin this long before the token expires, so no request carries an expired one.</summary>
    private static readonly TimeSpan Margin = TimeSpan.FromSeconds(30);

    /// <summary>A plugin that waits on a prompt or a dead identity provider must not hold every request for ever.</summary>
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(1);

    private readonly Lock _lock = new();
    private Task<(string Token, DateTimeOffset? Expires)>? _credential; // the last run, or the one in flight

    /// <summary>The token of the last run while it is good; else the plugin is run once, for all callers waiting.</summary>
    public async ValueTask<string> GetAsync(CancellationToken cancellationToken)
    {
        Task<(string Token, DateTimeOffset? Expires)> credential;
        lock (_lock)
        {
            if (_credential is null || _credential.IsFaulted
                || (_credential.IsCompletedSuccessfully && _credential.Result.Expires is { } expires && time.GetUtcNow() >= expires - Margin))
            {
                // Not the caller's token: one caller giving up must not fail the others' run.
                _credential = RunAsync();
            }

            credential = _credential;
        }

        return (await credential.WaitAsync(cancellationToken)).Token;
    }

    private async Task<(string Token, DateTimeOffset? Expires)> RunAsync()
    {
        var start = new ProcessStartInfo(command) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        start.Environment["KUBERNETES_EXEC_INFO"] = $$$"""{"apiVersion":"{{{apiVersion}}}","kind":"ExecCredential","spec":{"interactive":false}}""";
        string output, errors;
        int exitCode;
        try
        {
            using var process = Process.Start(start) ?? throw new KubeConfigException($"credential plugin {command} did not start");
            using var timeout = new CancellationTokenSource(RunTimeout);
            try
            {
                var reading = process.StandardOutput.ReadToEndAsync(timeout.Token);
                var readingErrors = process.StandardError.ReadToEndAsync(timeout.Token);
                await process.WaitForExitAsync(timeout.Token);
                (output, errors, exitCode) = (await reading, await readingErrors, process.ExitCode);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new KubeConfigException($"credential plugin {command} did not finish within {RunTimeout.TotalSeconds:0} s");
            }
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new KubeConfigException($"credential plugin {command} could not be run: {e.Message}");
        }

        if (exitCode != 0)
        {
            throw new KubeConfigException($"credential plugin {command} failed with exit code {exitCode}: {errors.Trim()}");
        }

        try
        {
            using var document = JsonDocument.Parse(output);
            var status = document.RootElement.GetProperty("status");
            if (!status.TryGetProperty("token", out var token) || token.GetString() is not { Length: > 0 } value)
            {
                throw new KubeConfigException($"credential plugin {command} gave no status.token (client certificates from a plugin are not supported)");
            }

            DateTimeOffset? expires = status.TryGetProperty("expirationTimestamp", out var at) && at.GetString() is { } text
                ? DateTimeOffset.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal)
                : null;
            return (value, expires);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new KubeConfigException($"credential plugin {command} printed no ExecCredential: {e.Message}");
        }
    }
}
