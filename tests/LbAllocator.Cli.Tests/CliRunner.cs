using System.Diagnostics;

namespace LbAllocator.Cli.Tests;

/// <summary>Runs the lballocator command in-process and captures what it prints.</summary>
internal sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    public static CliRun Of(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr);
        return new CliRun(code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>
    /// Runs lballocator as its own process: only there does an exception nobody catches show as what a user sees (a
    /// stack trace and the runtime's exit code). The binary is LBALLOCATOR_CLI when set (the test command sets it to
    /// the published NativeAOT binary, the one the image ships), else the built lballocator.dll on the dotnet host
    /// running the tests.
    /// </summary>
    public static CliRun OfProcess(params string[] args)
    {
        var cli = LbAllocator.TestApiServer.PublishedCli.Path;
        var start = new ProcessStartInfo(cli ?? Environment.ProcessPath!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        if (cli is null)
        {
            start.ArgumentList.Add(System.IO.Path.Combine(AppContext.BaseDirectory, "lballocator.dll"));
        }

        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill();
            throw new TimeoutException($"lballocator {string.Join(' ', args)} did not exit within 60 s");
        }

        return new CliRun(process.ExitCode, stdout, stderr.Result);
    }
}

/// <summary>A temporary directory of manifest files, deleted afterwards.</summary>
internal sealed class ManifestDir : IDisposable
{
    public ManifestDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "lballocator-tests-" + Guid.NewGuid().ToString("N"));

    public string Write(string name, string content)
    {
        var file = System.IO.Path.Combine(Path, name);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(file)!);
        File.WriteAllText(file, content);
        return file;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);

    public const string Pool = """
        apiVersion: lballocator.io/v1alpha1
        kind: IPAddressPool
        metadata:
          name: main
        spec:
          addresses: [192.0.2.0/30]
        """;

    public static string Service(string name, string extra = "") => $"""
        apiVersion: v1
        kind: Service
        metadata:
          name: {name}
          namespace: default
        {extra}
        spec:
          type: LoadBalancer
          ports:
            - port: 80
        """;
}
