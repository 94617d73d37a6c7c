namespace LbAllocator.TestApiServer;

/// <summary>
/// The lballocator binary that tests starting it as a process run: LBALLOCATOR_CLI when set (the test command sets it
/// to the published NativeAOT binary, the one the image ships); null for the build's own lballocator.dll.
/// </summary>
public static class PublishedCli
{
    public static string? Path => Environment.GetEnvironmentVariable("LBALLOCATOR_CLI") is { Length: > 0 } cli ? System.IO.Path.GetFullPath(cli) : null;
}
