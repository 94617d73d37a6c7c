using System.Diagnostics;

namespace LbAllocator.NetTests;

/// <summary>Runs the network tools the lab needs (ip, arping, tcpdump, tcpreplay, iptables, ss).</summary>
public static class Shell
{
    public static async Task<(int Code, string Output)> RunAsync(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout + await stderr);
    }

    /// <summary>Runs a command that must succeed; its output is in the exception otherwise.</summary>
    public static async Task<string> MustAsync(string file, params string[] args)
    {
        var (code, output) = await RunAsync(file, args);
        return code == 0 ? output : throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {code}: {output}");
    }

    /// <summary>
    /// tcpdump on eth0 in <paramref name="ns"/>, returned once it says it is listening, so no frame sent
    /// after this returns is missed.
    /// </summary>
    public static Task<Background> CaptureAsync(string ns, params string[] tcpdumpArgs) => CaptureOnAsync(ns, "eth0", tcpdumpArgs);

    /// <summary>tcpdump on <paramref name="interface"/> in <paramref name="ns"/>, returned once it says it is listening.</summary>
    public static async Task<Background> CaptureOnAsync(string ns, string @interface, params string[] tcpdumpArgs)
    {
        var capture = new Background("ip", ["netns", "exec", ns, "tcpdump", "-i", @interface, .. tcpdumpArgs]);
        var started = Stopwatch.StartNew();
        while (!capture.Lines.Any(l => l.Contains("listening on ", StringComparison.Ordinal)))
        {
            if (capture.HasExited || started.Elapsed > TimeSpan.FromSeconds(10))
            {
                var lines = string.Join(" | ", capture.Lines);
                capture.Dispose();
                throw new InvalidOperationException($"tcpdump in {ns} did not start listening: {lines}");
            }

            await Task.Delay(10);
        }

        return capture;
    }

    /// <summary>A long-running process whose output is kept for diagnostics and for tests that read it.</summary>
    public sealed class Background : IDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = [];

        /// <param name="input">Whether the process reads a standard input that <see cref="Input"/> writes.</param>
        public Background(string file, IEnumerable<string> args, IDictionary<string, string>? environment = null, bool input = false)
        {
            var info = new ProcessStartInfo(file) { RedirectStandardInput = input, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var arg in args)
            {
                info.ArgumentList.Add(arg);
            }

            foreach (var (key, value) in environment ?? new Dictionary<string, string>())
            {
                info.Environment[key] = value;
            }

            _process = Process.Start(info)!;
            _process.OutputDataReceived += (_, e) => Add(e.Data);
            _process.ErrorDataReceived += (_, e) => Add(e.Data);
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        public int Pid => _process.Id;

        public bool HasExited => _process.HasExited;

        /// <summary>The process's standard input, when started with one.</summary>
        public StreamWriter Input => _process.StandardInput;

        public IReadOnlyList<string> Lines
        {
            get
            {
                lock (_lines)
                {
                    return [.. _lines];
                }
            }
        }

        public async Task SignalAsync(string signal) => await MustAsync("kill", $"-{signal}", Pid.ToString(System.Globalization.CultureInfo.InvariantCulture));

        public async Task<bool> WaitForExitAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await _process.WaitForExitAsync(cts.Token);
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }

            _process.Dispose();
        }

        private void Add(string? line)
        {
            if (line is not null)
            {
                lock (_lines)
                {
                    _lines.Add(line);
                }
            }
        }
    }
}
